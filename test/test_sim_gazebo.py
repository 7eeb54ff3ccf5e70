"""Gazebo front end, validated without Gazebo: bridge YAML, SDF world, launch file structure, the
Contacts -> TactileArray conversion on duck-typed messages, and config/sim.yaml vs the node's defaults."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from embodied_wm.ros.gz_tactile_adapter import TaxelLayout, contacts_to_tactile, main, tip_center_from_joints

REPO = Path(__file__).resolve().parents[1]


def _ns(**fields: Any) -> SimpleNamespace:
    """A duck-typed stand-in for a ROS message."""
    return SimpleNamespace(**fields)


#: ROS <-> Gazebo message pairs ros_gz_bridge supports (the subset this package uses).
PAIRS = {
    "sensor_msgs/msg/Image": "gz.msgs.Image",
    "sensor_msgs/msg/CameraInfo": "gz.msgs.CameraInfo",
    "ros_gz_interfaces/msg/Contacts": "gz.msgs.Contacts",
    "rosgraph_msgs/msg/Clock": "gz.msgs.Clock",
    "sensor_msgs/msg/JointState": "gz.msgs.Model",
    "std_msgs/msg/Float64": "gz.msgs.Double",
}


def _sdf() -> ET.Element:
    return ET.parse(REPO / "worlds" / "tabletop.sdf").getroot()


def test_bridge_yaml_structure_and_topics_match_the_world() -> None:
    entries = yaml.safe_load((REPO / "config" / "gz_bridge.yaml").read_text())
    assert isinstance(entries, list) and entries
    for e in entries:
        assert {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"} <= set(e)
        assert all(isinstance(e[k], str) and e[k] for k in ("ros_topic_name", "gz_topic_name"))
        assert re.fullmatch(r"[a-z_]+/msg/[A-Z][A-Za-z0-9]*", e["ros_type_name"])
        assert PAIRS[e["ros_type_name"]] == e["gz_type_name"]
        assert e["direction"] in ("GZ_TO_ROS", "ROS_TO_GZ", "BIDIRECTIONAL")
        assert isinstance(e.get("lazy", False), bool)
    by_ros = {e["ros_topic_name"]: e for e in entries}
    for topic in (
        "/camera/image_raw",
        "/camera/camera_info",
        "/clock",
        "/fingertip/contacts",
        "/joint_states",
    ):
        assert by_ros[topic]["direction"] == "GZ_TO_ROS", topic
    # Every Gazebo topic the bridge uses is one the world publishes or subscribes.
    sdf_text = (REPO / "worlds" / "tabletop.sdf").read_text()
    for e in entries:
        if e["gz_topic_name"] != "/clock":
            assert f">{e['gz_topic_name']}<" in sdf_text, e["gz_topic_name"]


def test_sdf_has_camera_contact_sensor_finger_and_plugins() -> None:
    root = _sdf()
    assert root.tag == "sdf" and tuple(map(int, root.get("version", "0").split("."))) >= (1, 9)
    world = root.find("world")
    assert world is not None
    plugins = {p.get("name") for p in world.findall("plugin")}
    assert {
        "gz::sim::systems::Physics",
        "gz::sim::systems::Sensors",
        "gz::sim::systems::Contact",
        "gz::sim::systems::SceneBroadcaster",
    } <= plugins
    for p in world.iter("plugin"):
        assert p.get("filename", "").startswith("gz-sim-")
    cams = [s for s in world.iter("sensor") if s.get("type") == "camera"]
    assert len(cams) == 1
    cam = cams[0]
    assert cam.findtext("topic") == "/camera/image_raw"
    assert cam.findtext("camera/camera_info_topic") == "/camera/camera_info"
    assert (
        int(cam.findtext("camera/image/width", "0")) == int(cam.findtext("camera/image/height", "-1")) == 64
    )
    assert 0 < float(cam.findtext("camera/horizontal_fov", "0")) < 3.0
    assert float(cam.findtext("update_rate", "0")) == 10
    contacts = [s for s in world.iter("sensor") if s.get("type") == "contact"]
    assert len(contacts) == 1
    link = next(lk for lk in world.iter("link") if contacts[0] in list(lk))
    collision_names = {c.get("name") for c in link.findall("collision")}
    assert contacts[0].findtext("contact/collision") in collision_names
    assert contacts[0].findtext("contact/topic") == "/fingertip/contacts"
    finger = next(m for m in world.findall("model") if m.get("name") == "finger")
    joints = {j.get("name"): j for j in finger.findall("joint")}
    assert set(joints) == {"finger_x", "finger_y", "finger_z"}
    assert all(j.get("type") == "prismatic" for j in joints.values())
    finger_plugins = [p.get("name") for p in finger.findall("plugin")]
    assert "gz::sim::systems::JointStatePublisher" in finger_plugins
    assert finger_plugins.count("gz::sim::systems::JointController") == 3
    objects = [m for m in world.findall("model") if m.get("name") not in ("table", "camera", "finger")]
    shapes = {next(iter(m.find("link/collision/geometry"))).tag for m in objects}  # type: ignore[arg-type]
    assert shapes == {"box", "cylinder", "sphere", "capsule"}


def _contact(
    positions: list[tuple[float, float, float]],
    forces: list[tuple[float, float, float]] | None = None,
    normals: list[tuple[float, float, float]] | None = None,
    depths: list[float] | None = None,
) -> Any:
    v = [_ns(x=p[0], y=p[1], z=p[2]) for p in positions]
    ws = [
        _ns(
            body_1_wrench=_ns(force=_ns(x=f[0], y=f[1], z=f[2])),
            body_2_wrench=_ns(force=_ns(x=0.0, y=0.0, z=0.0)),
        )
        for f in (forces or [])
    ]
    ns = [_ns(x=n[0], y=n[1], z=n[2]) for n in (normals or [])]
    return _ns(positions=v, wrenches=ws, normals=ns, depths=depths or [])


def test_contacts_to_tactile_places_and_weighs_contacts() -> None:
    tip = np.array([0.1, -0.05, 0.012])
    r = 0.012
    below = _contact([(0.1, -0.05, 0.0)], forces=[(0.5, 0.0, 3.0)], normals=[(0.0, 0.0, 1.0)])
    grid = contacts_to_tactile([below], tip)
    assert grid.shape == (5, 5) and grid.dtype == np.float32
    assert grid[2, 2] == pytest.approx(3.0)  # the normal component only
    assert grid.sum() == pytest.approx(3.0)
    # A push from +y lands in row 0 (nearest +y), middle column; from -x in column 0.
    side_y = _contact([(0.1, -0.05 + r * 0.98, 0.012)], forces=[(0.0, -2.0, 0.0)], normals=[(0.0, -1.0, 0.0)])
    side_x = _contact([(0.1 - r * 0.98, -0.05, 0.012)], forces=[(1.5, 0.0, 0.0)])
    grid = contacts_to_tactile([side_y, side_x], tip)
    assert grid[0, 2] == pytest.approx(2.0) and grid[2, 0] == pytest.approx(1.5)
    # No wrench reported: penetration depth x stiffness.
    grid = contacts_to_tactile(
        [_contact([(0.1, -0.05, 0.0)], depths=[0.001])], tip, TaxelLayout(depth_stiffness=1000)
    )
    assert grid[2, 2] == pytest.approx(1.0)
    # Contacts on the shaft (above the taxel band), off the pad, or non-finite are ignored.
    ignored = [
        _contact([(0.1, -0.05, 0.05)], forces=[(0.0, 0.0, 5.0)]),
        _contact([(0.2, -0.05, 0.0)], forces=[(0.0, 0.0, 5.0)]),
        _contact([(float("nan"), -0.05, 0.0)], forces=[(0.0, 0.0, 5.0)]),
    ]
    assert contacts_to_tactile(ignored, tip).sum() == 0.0
    with pytest.raises(ValueError, match="at least 1x1"):
        TaxelLayout(rows=0)


def test_tip_center_from_joint_states() -> None:
    off = np.array([0.0, -0.15, 0.12])
    got = tip_center_from_joints(["finger_z", "finger_x", "finger_y"], [0.01, 0.02, 0.03], off)
    assert got is not None and np.allclose(got, [0.02, -0.12, 0.13])
    assert tip_center_from_joints(["finger_x"], [0.0], off) is None


@pytest.mark.skipif(
    importlib.util.find_spec("ros_gz_interfaces") is not None, reason="ros_gz_interfaces present"
)
def test_adapter_reports_missing_ros_gz_interfaces(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 3
    assert "ros_gz_interfaces is not installed" in capsys.readouterr().err


class _Rec:
    """Stand-in for every launch / launch_ros class: records its arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


def _stub_modules() -> dict[str, types.ModuleType]:
    names = {
        "launch": ["LaunchDescription"],
        "launch.actions": [
            "DeclareLaunchArgument",
            "IncludeLaunchDescription",
            "GroupAction",
            "ExecuteProcess",
        ],
        "launch.conditions": ["IfCondition", "UnlessCondition"],
        "launch.launch_description_sources": ["PythonLaunchDescriptionSource"],
        "launch.substitutions": [
            "LaunchConfiguration",
            "PathJoinSubstitution",
            "PythonExpression",
            "TextSubstitution",
        ],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
        "launch_ros.substitutions": ["FindPackageShare"],
    }
    mods = {}
    for mod, classes in names.items():
        m = types.ModuleType(mod)
        for c in classes:
            setattr(m, c, type(c, (_Rec,), {}))
        mods[mod] = m
    return mods


def test_launch_file_builds_the_expected_description(monkeypatch: pytest.MonkeyPatch) -> None:
    path = REPO / "launch" / "gazebo.launch.py"
    compile(path.read_text(), str(path), "exec")
    for name, mod in _stub_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("gazebo_launch_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    desc = module.generate_launch_description()
    entities = desc.args[0]
    declared = {e.args[0] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    assert {"world", "bridge_config", "headless", "use_sim_time", "run_perception"} <= declared
    include = next(e for e in entities if type(e).__name__ == "IncludeLaunchDescription")
    src = include.args[0].args[0]
    assert "gz_sim.launch.py" in src.args[0] and "ros_gz_sim" in src.args[0][0].args
    assert "gz_args" in dict(include.kwargs["launch_arguments"])
    nodes = {(e.kwargs["package"], e.kwargs["executable"]): e for e in entities if type(e).__name__ == "Node"}
    assert ("ros_gz_bridge", "parameter_bridge") in nodes
    assert "config_file" in nodes[("ros_gz_bridge", "parameter_bridge")].kwargs["parameters"][0]
    assert ("embodied_wm", "gz_tactile_adapter") in nodes and ("embodied_wm", "perception_node") in nodes


def test_sim_yaml_matches_node_defaults() -> None:
    from embodied_wm.ros.sim_node import DEFAULTS

    params = yaml.safe_load((REPO / "config" / "sim.yaml").read_text())["sim_node"]["ros__parameters"]

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    assert flat(params) == DEFAULTS
