"""Replay a rosbag through the live stack: `ros2 bag play --clock` + perception_node (sim time) +
evaluator_node scoring the predictions against the frames that follow.

    ros2 launch embodied_wm replay.launch.py bag:=/path/to/bag [rate:=1.0] [backend:=onnxruntime]
        [model:=DIR] [results_path:=out/results.jsonl] [player:=embodied_wm]

``player:=embodied_wm`` uses the package's own bag player (python -m embodied_wm.tools.bag_player) where
rosbag2 is not installed; it publishes the same messages in the same order with /clock.
"""

from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


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
            description="ros2 bag play, or the package's bag_player",
        ),
        DeclareLaunchArgument("delay", default_value="2.0", description="seconds before playback starts"),
        DeclareLaunchArgument("backend", default_value="auto", description="perception backend"),
        DeclareLaunchArgument("model", default_value="", description="model directory ('' = models/tiny)"),
        DeclareLaunchArgument(
            "camera_reliability",
            default_value="reliable",
            choices=["best_effort", "reliable", "system_default"],
            description="reliable: every recorded frame reaches the model",
        ),
        DeclareLaunchArgument("evaluator", default_value="true", description="run evaluator_node"),
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
        DeclareLaunchArgument("fastdds_shm", default_value="false", description="use config/fastdds_shm.xml"),
    ]
    is_ros2 = PythonExpression(["'", cfg("player"), "' == 'ros2'"])
    is_ours = PythonExpression(["'", cfg("player"), "' == 'embodied_wm'"])
    # ros2 bag play --clock: the recorded messages in order, /clock from the bag's time line. The delay
    # gives perception_node time to load its model and subscribe before the first frame.
    ros2_play = ExecuteProcess(
        cmd=["ros2", "bag", "play", "--clock", "--rate", cfg("rate"), "--delay", cfg("delay"), cfg("bag")],
        output="screen",
        condition=IfCondition(is_ros2),
    )
    own_play = ExecuteProcess(
        cmd=[
            "python3",
            "-m",
            "embodied_wm.tools.bag_player",
            cfg("bag"),
            "--clock",
            "--rate",
            cfg("rate"),
            "--delay",
            cfg("delay"),
            "--wait-for",
            "/camera/image_raw",
        ],
        output="screen",
        condition=IfCondition(is_ours),
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
            },
        ],
    )
    return LaunchDescription([*args, ros2_play, own_play, perception, evaluator])
