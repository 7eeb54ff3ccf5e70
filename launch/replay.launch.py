"""Replay a rosbag through the live stack: a bag player with --clock + perception_node (sim time) +
evaluator_node scoring the predictions against the frames that follow.

    ros2 launch embodied_wm replay.launch.py bag:=/path/to/bag [rate:=1.0] [backend:=onnxruntime]
        [model:=DIR] [results_path:=out/results.jsonl] [player:=embodied_wm]

``player:=ros2`` (default) runs ``ros2 bag play --clock`` (rosbag2); ``player:=embodied_wm`` runs the
package's own bag player (``ros2 run embodied_wm bag_player``), for where rosbag2 is not installed: it
publishes the same messages in the same order with /clock.

The launch ends with the player: when playback finishes (exit 0) it shuts down ``shutdown_delay``
seconds later, so the last predictions are still scored; when the player fails (any other exit
status: a bad bag, ``ros2 bag`` not installed) it shuts down at once, giving the player's exit status
as the reason. ``ros2`` itself missing from PATH fails the launch before anything starts.
"""

from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    LogInfo,
    SetEnvironmentVariable,
    Shutdown,
    TimerAction,
)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import (
    FindExecutable,
    LaunchConfiguration,
    PathJoinSubstitution,
    PythonExpression,
)
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

#: As in perception.launch.py (a test keeps them equal).
FASTDDS_SHM_DESCRIPTION = (
    "true: every node of this launch reads config/fastdds_shm.xml (FASTRTPS_DEFAULT_PROFILES_FILE; 16 MB "
    "shared-memory segments, faster large images). false: the environment is left as it is, and "
    "perception_node still loads that profile by itself unless FASTRTPS_DEFAULT_PROFILES_FILE is set "
    "or EWM_FASTDDS_SHM=0"
)


def player_exited(event, context):  # launch calls it with (ProcessExited, LaunchContext)
    """End the launch with the player: ``shutdown_delay`` seconds after playback finished, at once, with
    the exit status as the reason, when the player failed. Nothing to add while already shutting down
    (Ctrl-C: the player exits 0 then too)."""
    if context.is_shutdown:
        return None
    name = event.process_name
    if event.returncode == 0:
        reason = f"replay: {name} finished playback"
        return [
            LogInfo(msg=f"{reason}; shutting down in shutdown_delay s"),
            TimerAction(period=LaunchConfiguration("shutdown_delay"), actions=[Shutdown(reason=reason)]),
        ]
    reason = (
        f"replay: {name} failed with exit status {event.returncode} (see its output above; "
        "player:=embodied_wm plays without rosbag2)"
    )
    return [LogInfo(msg=f"{reason}; shutting down"), Shutdown(reason=reason)]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("embodied_wm")
    cfg = LaunchConfiguration
    args = [
        DeclareLaunchArgument("bag", description="rosbag2 directory (or .mcap / .db3) to replay"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument(
            "player",
            default_value="ros2",
            choices=["ros2", "embodied_wm"],
            description="ros2: ros2 bag play (rosbag2); embodied_wm: the package's bag_player",
        ),
        DeclareLaunchArgument("delay", default_value="2.0", description="seconds before playback starts"),
        DeclareLaunchArgument(
            "shutdown_delay",
            default_value="2.0",
            description="seconds from the end of playback to shutdown (the last predictions are scored)",
        ),
        DeclareLaunchArgument("backend", default_value="auto", description="perception backend"),
        DeclareLaunchArgument("model", default_value="", description="model directory ('' = models/tiny)"),
        DeclareLaunchArgument(
            "camera_reliability",
            default_value="reliable",
            choices=["best_effort", "reliable", "system_default"],
            description="camera QoS of perception_node and evaluator_node (reliable: every recorded frame)",
        ),
        DeclareLaunchArgument(
            "evaluator", default_value="true", choices=["true", "false"], description="run evaluator_node"
        ),
        DeclareLaunchArgument(
            "evaluator_params",
            default_value=PathJoinSubstitution([share, "config", "evaluator.yaml"]),
            description="evaluator_node parameters",
        ),
        DeclareLaunchArgument(
            "results_path", default_value="", description="evaluator JSON lines ('' = none)"
        ),
        DeclareLaunchArgument(
            "summary_path", default_value="", description="evaluator summary JSON ('' = none)"
        ),
        DeclareLaunchArgument(
            "fastdds_shm",
            default_value="false",
            choices=["true", "false"],
            description=FASTDDS_SHM_DESCRIPTION,
        ),
    ]
    # First, so that the player inherits it too: an environment variable set inside the included
    # perception launch would reach only the nodes declared after the include.
    shm = SetEnvironmentVariable(
        "FASTRTPS_DEFAULT_PROFILES_FILE",
        PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
        condition=IfCondition(cfg("fastdds_shm")),
    )
    is_ros2 = PythonExpression(["'", cfg("player"), "' == 'ros2'"])
    is_ours = PythonExpression(["'", cfg("player"), "' == 'embodied_wm'"])
    # ros2 bag play --clock: the recorded messages in order, /clock from the bag's time line. The delay
    # gives perception_node time to load its model and subscribe before the first frame. FindExecutable
    # fails the launch at once, with the reason, when there is no ros2 on PATH.
    ros2_play = ExecuteProcess(
        cmd=[
            FindExecutable(name="ros2"),
            "bag",
            "play",
            "--clock",
            "--rate",
            cfg("rate"),
            "--delay",
            cfg("delay"),
            cfg("bag"),
        ],
        name="ros2_bag_play",
        output="screen",
        condition=IfCondition(is_ros2),
        on_exit=player_exited,
    )
    own_play = Node(
        package="embodied_wm",
        executable="bag_player",
        name="bag_player",
        arguments=[
            cfg("bag"),
            "--clock",
            "--rate",
            cfg("rate"),
            "--delay",
            cfg("delay"),
            "--wait-for",
            "/camera/image_raw",
            # perception_node subscribes only once active (after loading its model), the evaluator at
            # once: waiting for "a subscriber" would start playback before the model can see it.
            "--wait-for-nodes",
            "perception_node",
            PythonExpression(["'evaluator_node' if '", cfg("evaluator"), "' == 'true' else ''"]),
            # Model loading (a TensorRT engine's first build above all) can take minutes.
            "--wait-timeout",
            "300",
        ],
        output="screen",
        condition=IfCondition(is_ours),
        on_exit=player_exited,
    )
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "perception.launch.py"])),
        launch_arguments={
            "use_sim_time": "true",
            "backend": cfg("backend"),
            "model": cfg("model"),
            "camera_reliability": cfg("camera_reliability"),
            "fastdds_shm": cfg("fastdds_shm"),
        }.items(),
    )
    evaluator = Node(
        package="embodied_wm",
        executable="evaluator_node",
        name="evaluator_node",
        output="screen",
        condition=IfCondition(cfg("evaluator")),
        parameters=[
            cfg("evaluator_params"),
            {
                "use_sim_time": True,
                "source": ParameterValue(cfg("bag"), value_type=str),
                "results_path": ParameterValue(cfg("results_path"), value_type=str),
                "summary_path": ParameterValue(cfg("summary_path"), value_type=str),
                # The frames the predictions are scored against: as reliable as the model's input.
                "qos.camera.reliability": cfg("camera_reliability"),
            },
        ],
    )
    return LaunchDescription([*args, shm, ros2_play, own_play, perception, evaluator])
