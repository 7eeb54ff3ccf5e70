"""embodied_wm.sim: MuJoCo tabletop simulator producing multimodal training data and a closed loop.

Modules: scene (MJCF, randomization, rendering, projection), audio (contact sound synthesis),
policies (scripted push/tap/sweep/idle), episode (closed-loop stepping), ground_truth (affordance
targets), messages (ROS messages for rosbags and rclpy), recorder (episodes -> rosbag2 MCAP), cli.
MuJoCo is imported by ``scene``; import the submodules you need rather than this package's names.
"""
