"""Gazebo (gz sim) front end for embodied_wm: the tabletop world, the ros_gz bridge, the tactile
adapter and the perception node.

    ros2 launch embodied_wm gazebo.launch.py [headless:=true] [run_perception:=false] [world:=FILE] ...

Gazebo provides the camera, contacts, joint states and clock; gz_tactile_adapter turns fingertip
contacts into /tactile and splits /cmd_vel_ee into per-joint velocity commands. Gazebo has no audio,
so the perception node runs with the audio modality missing.
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import (
    LaunchConfiguration,
    PathJoinSubstitution,
    PythonExpression,
)
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("embodied_wm")
    cfg = LaunchConfiguration
    args = [
        DeclareLaunchArgument(
            "world",
            default_value=PathJoinSubstitution([share, "worlds", "tabletop.sdf"]),
            description="SDF world to load",
        ),
        DeclareLaunchArgument(
            "bridge_config",
            default_value=PathJoinSubstitution([share, "config", "gz_bridge.yaml"]),
            description="ros_gz_bridge YAML (topic mapping)",
        ),
        DeclareLaunchArgument(
            "perception_params",
            default_value=PathJoinSubstitution([share, "config", "perception.yaml"]),
            description="perception_node parameter file",
        ),
        DeclareLaunchArgument(
            "headless", default_value="false", description="run the Gazebo server only (no GUI)"
        ),
        DeclareLaunchArgument("run_perception", default_value="true", description="start perception_node"),
        DeclareLaunchArgument("use_sim_time", default_value="true", description="follow Gazebo's /clock"),
        DeclareLaunchArgument("tactile_rate_hz", default_value="10.0", description="/tactile publish rate"),
        DeclareLaunchArgument(
            "tip_base_offset",
            default_value="[0.0, -0.15, 0.12]",
            description="fingertip centre at zero joint positions (world, m)",
        ),
        DeclareLaunchArgument("max_speed", default_value="0.3", description="end-effector speed limit (m/s)"),
        DeclareLaunchArgument(
            "contacts_topic",
            default_value="/fingertip/contacts",
            description="bridged ros_gz_interfaces/Contacts topic (none = no /tactile, commands only)",
        ),
    ]
    # gz_sim.launch.py takes the whole gz command line as one string: the world, -r (run at start) and
    # -s (server only) when headless.
    gz_args = [cfg("world"), " -r", PythonExpression(["' -s' if '", cfg("headless"), "' == 'true' else ''"])]
    gazebo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("ros_gz_sim"), "launch", "gz_sim.launch.py"])
        ),
        launch_arguments={"gz_args": gz_args, "on_exit_shutdown": "true"}.items(),
    )
    bridge = Node(
        package="ros_gz_bridge",
        executable="parameter_bridge",
        name="gz_bridge",
        parameters=[{"config_file": cfg("bridge_config"), "use_sim_time": cfg("use_sim_time")}],
        output="screen",
    )
    adapter = Node(
        package="embodied_wm",
        executable="gz_tactile_adapter",
        name="gz_tactile_adapter",
        parameters=[
            {
                "use_sim_time": cfg("use_sim_time"),
                "contacts_topic": cfg("contacts_topic"),
                "rate_hz": cfg("tactile_rate_hz"),
                "base_offset": cfg("tip_base_offset"),
                "max_speed": cfg("max_speed"),
            }
        ],
        output="screen",
    )
    perception = Node(
        package="embodied_wm",
        executable="perception_node",
        name="perception_node",
        parameters=[cfg("perception_params"), {"use_sim_time": cfg("use_sim_time")}],
        condition=IfCondition(cfg("run_perception")),
        output="screen",
    )
    return LaunchDescription([*args, gazebo, bridge, adapter, perception])
