"""perception_node alone: camera/audio/tactile/joints/actions in, predictions and affordances out.

    ros2 launch embodied_wm perception.launch.py [backend:=onnxruntime] [model:=/path/model_dir]
        [use_sim_time:=true] [camera_topic:=/my/camera] [camera_transport:=compressed] [rate_hz:=5.0]
        [params_file:=my.yaml] [fastdds_shm:=true] [namespace:=robot1]

perception_node is a lifecycle node; with ``autostart:=true`` (default) it configures and activates itself,
with ``autostart:=false`` drive it through ~/change_state (a lifecycle manager, or the ``ros2 lifecycle set``
commands the node logs while it waits). ``<input>_topic:=none`` switches an optional input off (``ros2
launch`` rejects an empty value).
"""

from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

#: The same text in sim.launch.py and replay.launch.py (a test keeps them equal).
FASTDDS_SHM_DESCRIPTION = (
    "true: every node of this launch reads config/fastdds_shm.xml (FASTRTPS_DEFAULT_PROFILES_FILE; 16 MB "
    "shared-memory segments, faster large images). false: the environment is left as it is, and "
    "perception_node still loads that profile by itself unless FASTRTPS_DEFAULT_PROFILES_FILE is set "
    "or EWM_FASTDDS_SHM=0"
)


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("embodied_wm")
    cfg = LaunchConfiguration
    args = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "perception.yaml"]),
            description="perception_node parameter file (the arguments below override it)",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("node_name", default_value="perception_node", description="node name"),
        DeclareLaunchArgument(
            "autostart",
            default_value="true",
            choices=["true", "false"],
            description="configure + activate at start-up; false: wait for a lifecycle manager",
        ),
        DeclareLaunchArgument(
            "backend",
            default_value="auto",
            choices=["auto", "tensorrt", "onnxruntime", "pytorch", "copy_last", "linear"],
            description="inference backend",
        ),
        DeclareLaunchArgument("model", default_value="", description="model directory ('' = models/tiny)"),
        DeclareLaunchArgument(
            "fallback_backend",
            default_value="linear",
            choices=["linear", "copy_last"],
            description="baseline used when the model is missing",
        ),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda | cuda:N"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
        DeclareLaunchArgument(
            "camera_topic", default_value="/camera/image_raw", description="camera topic (required)"
        ),
        DeclareLaunchArgument(
            "camera_transport", default_value="raw", choices=["raw", "compressed"], description="camera type"
        ),
        DeclareLaunchArgument(
            "audio_topic", default_value="/audio", description="audio topic (none = no audio)"
        ),
        DeclareLaunchArgument(
            "tactile_topic", default_value="/tactile", description="tactile topic (none = no tactile input)"
        ),
        DeclareLaunchArgument(
            "joint_states_topic",
            default_value="/joint_states",
            description="joint states topic (none = no joint states)",
        ),
        DeclareLaunchArgument(
            "action_topic",
            default_value="/cmd_vel_ee",
            description="end-effector twist command topic (none = no actions)",
        ),
        DeclareLaunchArgument(
            "rate_hz",
            default_value="0.0",
            description="predictions per second of data time (0 = every frame)",
        ),
        DeclareLaunchArgument(
            "camera_reliability",
            default_value="best_effort",
            choices=["best_effort", "reliable", "system_default"],
            description="camera subscription reliability (reliable for big images over loopback)",
        ),
        DeclareLaunchArgument("preview", default_value="true", description="publish preview images"),
        DeclareLaunchArgument("log_level", default_value="info", description="ROS log level"),
        DeclareLaunchArgument(
            "fastdds_shm",
            default_value="false",
            choices=["true", "false"],
            description=FASTDDS_SHM_DESCRIPTION,
        ),
    ]
    shm = SetEnvironmentVariable(
        "FASTRTPS_DEFAULT_PROFILES_FILE",
        PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
        condition=IfCondition(cfg("fastdds_shm")),
    )
    # Strings are wrapped in ParameterValue(value_type=str): launch would otherwise YAML-parse them
    # ('' becomes null, a topic like "/123" a number).
    node = LifecycleNode(
        package="embodied_wm",
        executable="perception_node",
        name=cfg("node_name"),
        namespace=cfg("namespace"),
        output="screen",
        parameters=[
            cfg("params_file"),
            {
                "autostart": cfg("autostart"),
                "backend": cfg("backend"),
                "model": ParameterValue(cfg("model"), value_type=str),
                "fallback_backend": cfg("fallback_backend"),
                "device": ParameterValue(cfg("device"), value_type=str),
                "use_sim_time": cfg("use_sim_time"),
                "topics.camera": ParameterValue(cfg("camera_topic"), value_type=str),
                "topics.audio": ParameterValue(cfg("audio_topic"), value_type=str),
                "topics.tactile": ParameterValue(cfg("tactile_topic"), value_type=str),
                "topics.joint_states": ParameterValue(cfg("joint_states_topic"), value_type=str),
                "topics.action": ParameterValue(cfg("action_topic"), value_type=str),
                "camera_transport": cfg("camera_transport"),
                "rate_hz": ParameterValue(cfg("rate_hz"), value_type=float),
                "qos.camera.reliability": cfg("camera_reliability"),
                "preview.enabled": cfg("preview"),
            },
        ],
        ros_arguments=["--log-level", cfg("log_level")],
    )
    return LaunchDescription([*args, shm, node])
