"""The launch files evaluated with test/launch_model.py (a model of ``ros2 launch``, which cannot be
installed here): which processes they start, with which environment and parameters, and what they do
when the bag player exits. See launch_model.py for what is modelled and where that comes from."""

from __future__ import annotations

import re
from pathlib import Path

import launch_model as L
import pytest
import yaml
from conftest import REPO

PROFILE = REPO / "config" / "fastdds_shm.xml"
PROFILE_VAR = "FASTRTPS_DEFAULT_PROFILES_FILE"
#: The launch configurations of the files that start more than one process, and what they start.
MULTI = [
    ("sim.launch.py", [], {"sim_node", "perception_node"}),
    ("sim.launch.py", ["planner:=true"], {"sim_node", "perception_node", "planner_node"}),
    (
        "replay.launch.py",
        ["bag:=/data/bag", "player:=embodied_wm"],
        {"bag_player", "perception_node", "evaluator_node"},
    ),
    (
        "replay.launch.py",
        ["bag:=/data/bag", "player:=ros2"],
        {"ros2_bag_play", "perception_node", "evaluator_node"},
    ),
    ("perception.launch.py", [], {"perception_node"}),
]


@pytest.fixture()
def fake_ros2(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has a ``ros2`` (replay's default player looks it up when it starts)."""
    (tmp_path / "ros2").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "ros2").chmod(0o755)
    return {"PATH": str(tmp_path)}


@pytest.mark.parametrize(("file", "argv", "names"), MULTI)
def test_fastdds_shm_reaches_every_process(
    file: str, argv: list[str], names: set[str], fake_ros2: dict[str, str]
) -> None:
    on = L.evaluate(file, [*argv, "fastdds_shm:=true"], base_env=fake_ros2)
    assert {p.name for p in on.processes} == names
    for p in on.processes:
        assert Path(p.env.get(PROFILE_VAR, "")) == PROFILE, f"{file}: {p.name} started without the profile"
    assert PROFILE.is_file()
    off = L.evaluate(file, argv, base_env=fake_ros2)
    assert all(PROFILE_VAR not in p.env for p in off.processes)


def test_fastdds_shm_description_is_one_and_true() -> None:
    """One description in every file, and what it says perception_node does on its own is true."""
    from embodied_wm.ros.qos import default_shm_profile

    texts = {
        f: next(a.description for a in L.declared_arguments(f) if a.name == "fastdds_shm")
        for f in ("perception.launch.py", "sim.launch.py", "replay.launch.py")
    }
    assert len(set(texts.values())) == 1, texts
    text = next(iter(texts.values()))
    assert "perception_node still loads" in text and "EWM_FASTDDS_SHM=0" in text
    env: dict[str, str] = {}
    assert default_shm_profile(env) is not None and env[PROFILE_VAR].endswith("fastdds_shm.xml")
    assert default_shm_profile({"EWM_FASTDDS_SHM": "0"}) is None
    assert default_shm_profile({PROFILE_VAR: "/mine.xml"}) is None


def _topic_arguments() -> list[tuple[str, str]]:
    return [
        (f.name, a.name)
        for f in sorted(L.LAUNCH_DIR.glob("*.launch.py"))
        for a in L.declared_arguments(f.name)
        if a.name.endswith("_topic")
    ]


def _node_table(executable: str) -> dict:
    from embodied_wm.ros import params as P
    from embodied_wm.ros.evaluator_node import EVALUATOR_PARAMS

    tables = {
        "perception_node": P.PERCEPTION_PARAMS,
        "planner_node": P.PLANNER_PARAMS,
        "evaluator_node": EVALUATOR_PARAMS,
    }
    return P.spec_table(tables[executable]) if executable in tables else {}


@pytest.mark.parametrize(("file", "argument"), _topic_arguments())
def test_topic_arguments_accept_the_disabling_word(file: str, argument: str) -> None:
    """``<x>_topic:=none`` reaches a node parameter that the node accepts as "off" (a required topic is
    refused with a reason); ``<x>_topic:=''`` would give the node two quote characters."""
    from embodied_wm.ros import params as P

    with pytest.raises(L.LaunchError, match="malformed"):
        L.evaluate(file, [f"{argument}:="])
    launch = L.evaluate(file, [f"{argument}:=none"])
    fed = [(p, k) for p in launch.processes for k, v in p.parameter_values().items() if v == "none"]
    assert len(fed) == 1, f"{argument}:=none should reach exactly one node parameter, got {fed}"
    process, param = fed[0]
    table = _node_table(process.executable)
    if table:
        reason = P.validate(table, param, "none")
        if "(required)" in next(a.description for a in launch.arguments.values() if a.name == argument):
            assert reason is not None and "cannot be disabled" in reason, reason
        else:
            assert reason is None and P.topic_disabled("none"), reason
        assert P.validate(table, param, "''") is not None  # what `name:=''` would pass on
    else:
        # gz_tactile_adapter (needs ros_gz_interfaces, not installable here): its source checks the word.
        source = L.executable_source(process.executable)
        assert f"topic_disabled(self.{param})" in source, f"{process.executable} ignores {param}:=none"


def test_perception_launch_with_every_optional_input_off_starts_a_valid_node() -> None:
    from embodied_wm.ros import params as P

    off = ["audio_topic:=none", "tactile_topic:=none", "joint_states_topic:=none", "action_topic:=none"]
    (node,) = L.evaluate("perception.launch.py", off).processes
    values = node.parameter_values()
    table = P.spec_table(P.PERCEPTION_PARAMS)
    problems = {k: r for k, v in values.items() if (r := P.validate(table, k, v))}
    assert not problems
    assert [i for i in P.INPUTS if P.topic_disabled(values[f"topics.{i}"])] == [
        "audio",
        "tactile",
        "joint_states",
        "action",
    ]


@pytest.mark.parametrize("file", ["perception.launch.py", "sim.launch.py", "replay.launch.py"])
def test_every_node_parameter_is_valid_with_the_defaults(file: str, fake_ros2: dict[str, str]) -> None:
    from embodied_wm.ros import params as P

    launch = L.evaluate(file, ["bag:=/data/bag"] if file.startswith("replay") else [], base_env=fake_ros2)
    for process in launch.processes:
        table = _node_table(process.executable)
        values = process.parameter_values()
        problems = {k: r for k, v in values.items() if (r := P.validate(table, k, v))}
        assert not problems, f"{file}: {process.name}: {problems}"


def test_autostart_has_one_default() -> None:
    from embodied_wm.ros import params as P

    doc = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())
    (block,) = doc.values()
    (arg,) = [a for a in L.declared_arguments("perception.launch.py") if a.name == "autostart"]
    assert P.AUTOSTART_DEFAULT is True
    assert block["ros__parameters"]["autostart"] is P.AUTOSTART_DEFAULT
    assert arg.default == str(P.AUTOSTART_DEFAULT).lower()
    assert P.spec_table(P.PERCEPTION_PARAMS)["autostart"].default is P.AUTOSTART_DEFAULT


def test_replay_ends_with_the_player(fake_ros2: dict[str, str]) -> None:
    for player, name in (("embodied_wm", "bag_player"), ("ros2", "ros2_bag_play")):
        launch = L.evaluate(
            "replay.launch.py",
            ["bag:=/data/bag", f"player:={player}", "shutdown_delay:=3.5"],
            base_env=fake_ros2,
        )
        (proc,) = [p for p in launch.processes if p.name == name]
        # Playback finished: shut down after shutdown_delay (the last predictions are still scored).
        assert L.shutdowns(L.process_exited(proc, 0, launch), launch) == [
            (3.5, f"replay: {name}-1 finished playback")
        ]
        # The player failed (a bad bag; `ros2 bag` missing exits 2): shut down at once, saying why.
        ((delay, reason),) = L.shutdowns(L.process_exited(proc, 2, launch), launch)
        assert delay == 0.0 and "exit status 2" in reason and name in reason
        # Already shutting down (Ctrl-C): nothing more.
        assert L.process_exited(proc, 0, launch, is_shutdown=True) == []
        # The other processes do not end the launch.
        assert all(p.action.on_exit is None for p in launch.processes if p is not proc)


def test_replay_without_ros2_fails_before_anything_starts() -> None:
    with pytest.raises(L.LaunchError, match="executable 'ros2' not found"):
        L.evaluate("replay.launch.py", ["bag:=/data/bag"], base_env={"PATH": "/nonexistent"})


def test_replay_player_is_the_installed_executable() -> None:
    launch = L.evaluate("replay.launch.py", ["bag:=/data/bag", "player:=embodied_wm"])
    (player,) = [p for p in launch.processes if p.name == "bag_player"]
    assert player.cmd[0].endswith("lib/embodied_wm/bag_player")
    assert player.cmd[1:3] == ["/data/bag", "--clock"]
    assert (REPO / "scripts" / "bag_player").is_file()


def test_readme_launch_arguments_table_matches_the_launch_files() -> None:
    """README's "Launch arguments" section is `python test/launch_model.py` output."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- launch-arguments:begin[^>]*-->\n(.*?)<!-- launch-arguments:end -->", text, re.S)
    assert m, "README has no launch-arguments block"
    assert m.group(1) == L.readme_tables(), (
        "README launch arguments are stale: run python test/launch_model.py"
    )
