"""rosbag2 reading and writing (via `rosbags`) and training datasets."""
