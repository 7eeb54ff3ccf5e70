"""Closed loop in the embedded MuJoCo simulator: sim_node + perception_node (+ planner_node).

    ros2 launch embodied_wm sim.launch.py [planner:=true goal_image:=/path/goal.png] [backend:=pytorch]
        [resolution:=64] [rate_hz:=10.0] [seed:=0] [realtime_factor:=1.0] [use_sim_time:=true]

``fastdds_shm:=true`` gives every process (sim_node included) the shared-memory Fast DDS profile.
With ``planner:=true`` the simulator executes external commands (policy external) and planner_node
drives it over perception_node's ~/predict_rollout; otherwise the simulator's scripted policy moves the
finger (``policy`` argument) and the perception node just watches.
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
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


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("embodied_wm")
    cfg = LaunchConfiguration
    args = [
        DeclareLaunchArgument(
            "sim_params",
            default_value=PathJoinSubstitution([share, "config", "sim.yaml"]),
            description="sim_node parameters",
        ),
        DeclareLaunchArgument(
            "planner_params",
            default_value=PathJoinSubstitution([share, "config", "planner.yaml"]),
            description="planner_node parameters",
        ),
        DeclareLaunchArgument("use_sim_time", default_value="true", description="sim_node publishes /clock"),
        DeclareLaunchArgument("resolution", default_value="64", description="camera resolution (square)"),
        DeclareLaunchArgument("rate_hz", default_value="10.0", description="camera frame rate"),
        DeclareLaunchArgument("seed", default_value="0", description="scene seed"),
        DeclareLaunchArgument(
            "realtime_factor", default_value="1.0", description="sim speed (sim time only)"
        ),
        DeclareLaunchArgument(
            "policy",
            default_value="scripted",
            choices=["scripted", "external"],
            description="sim_node policy when planner:=false",
        ),
        DeclareLaunchArgument(
            "ground_truth", default_value="false", description="publish ground-truth topics"
        ),
        DeclareLaunchArgument("backend", default_value="auto", description="perception backend"),
        DeclareLaunchArgument("model", default_value="", description="model directory ('' = models/tiny)"),
        DeclareLaunchArgument("planner", default_value="false", description="run planner_node (MPC)"),
        DeclareLaunchArgument("goal_image", default_value="", description="planner goal image file"),
        DeclareLaunchArgument(
            "num_candidates", default_value="32", description="planner candidates per query"
        ),
        DeclareLaunchArgument("max_speed", default_value="0.05", description="planner speed bound (m/s)"),
        DeclareLaunchArgument(
            "fastdds_shm",
            default_value="false",
            choices=["true", "false"],
            description=FASTDDS_SHM_DESCRIPTION,
        ),
    ]
    # First, so that every process below inherits it: an environment variable set inside the included
    # perception launch would reach only the nodes declared after the include (not sim_node).
    shm = SetEnvironmentVariable(
        "FASTRTPS_DEFAULT_PROFILES_FILE",
        PathJoinSubstitution([share, "config", "fastdds_shm.xml"]),
        condition=IfCondition(cfg("fastdds_shm")),
    )
    # The planner needs the simulator to take its commands.
    policy = PythonExpression(["'external' if '", cfg("planner"), "' == 'true' else '", cfg("policy"), "'"])
    sim = Node(
        package="embodied_wm",
        executable="sim_node",
        name="sim_node",
        output="screen",
        parameters=[
            cfg("sim_params"),
            {
                "use_sim_time": cfg("use_sim_time"),
                "resolution": cfg("resolution"),
                "rate_hz": ParameterValue(cfg("rate_hz"), value_type=float),
                "seed": cfg("seed"),
                "realtime_factor": ParameterValue(cfg("realtime_factor"), value_type=float),
                "policy": ParameterValue(policy, value_type=str),
                "publish_ground_truth": cfg("ground_truth"),
            },
        ],
    )
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "perception.launch.py"])),
        launch_arguments={
            "use_sim_time": cfg("use_sim_time"),
            "backend": cfg("backend"),
            "model": cfg("model"),
            "fastdds_shm": cfg("fastdds_shm"),
        }.items(),
    )
    planner = Node(
        package="embodied_wm",
        executable="planner_node",
        name="planner_node",
        output="screen",
        condition=IfCondition(cfg("planner")),
        parameters=[
            cfg("planner_params"),
            {
                "use_sim_time": cfg("use_sim_time"),
                "goal_image": ParameterValue(cfg("goal_image"), value_type=str),
                "num_candidates": cfg("num_candidates"),
                "max_speed": ParameterValue(cfg("max_speed"), value_type=float),
            },
        ],
    )
    return LaunchDescription([*args, shm, sim, perception, planner])
