"""Static checks of launch/*.launch.py (`ros2 launch` cannot be installed here, so nothing is launched).

Each launch file is parsed with ``ast`` (``launch`` / ``launch_ros`` are never imported) and checked:
* it defines ``generate_launch_description``;
* every ``LaunchConfiguration("x")`` is declared by a ``DeclareLaunchArgument("x")`` in the same file,
  and every declared argument is used;
* every package named (Node/LifecycleNode ``package=``, ``FindPackageShare``) is this package or one of
  its package.xml dependencies;
* every embodied_wm executable exists in scripts/ and in CMakeLists' install(PROGRAMS) list;
* every file it names under config/, launch/ or worlds/ exists;
* every parameter name set in a node's ``parameters=[{...}]`` is declared by that node (its parameter
  table, its ``declare_parameter`` calls, or its YAML in config/);
* every ``launch_arguments`` key passed to an included embodied_wm launch file is declared there.
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_DIR = REPO / "launch"
OURS = "embodied_wm"
#: Launch files this package must ship (gazebo.launch.py belongs to the simulator work).
REQUIRED = ("perception.launch.py", "sim.launch.py", "replay.launch.py")
LAUNCH_FILES = sorted(p.name for p in LAUNCH_DIR.glob("*.launch.py"))


# ------------------------------------------------------------------------------------- helpers
def _call_name(node: ast.Call) -> str:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr
    return ""


def _str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _kw(call: ast.Call, name: str, pos: int | None = None) -> ast.AST | None:
    for k in call.keywords:
        if k.arg == name:
            return k.value
    if pos is not None and len(call.args) > pos:
        return call.args[pos]
    return None


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _resolve(node: ast.AST | None, assigns: dict[str, ast.AST]) -> ast.AST | None:
    """Follow simple ``name = expr`` assignments of the launch function (one level is enough here)."""
    seen = 0
    while isinstance(node, ast.Name) and node.id in assigns and seen < 5:
        node = assigns[node.id]
        seen += 1
    return node


@dataclass
class LaunchInfo:
    path: Path
    tree: ast.Module
    declared: dict[str, ast.Call] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    calls: list[ast.Call] = field(default_factory=list)
    assigns: dict[str, ast.AST] = field(default_factory=dict)
    #: aliases of LaunchConfiguration (e.g. ``cfg = LaunchConfiguration``)
    lc_names: set[str] = field(default_factory=lambda: {"LaunchConfiguration"})


def parse(path: Path) -> LaunchInfo:
    tree = ast.parse(path.read_text(), filename=str(path))
    info = LaunchInfo(path, tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            info.assigns[node.targets[0].id] = node.value
            if isinstance(node.value, ast.Name) and node.value.id == "LaunchConfiguration":
                info.lc_names.add(node.targets[0].id)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        info.calls.append(node)
        name = _call_name(node)
        if name == "DeclareLaunchArgument":
            arg = _str(_kw(node, "name", 0))
            assert arg, f"{path.name}:{node.lineno}: DeclareLaunchArgument needs a literal name"
            info.declared[arg] = node
        elif name in info.lc_names or (isinstance(node.func, ast.Name) and node.func.id in info.lc_names):
            arg = _str(_kw(node, "variable_name", 0))
            assert arg, f"{path.name}:{node.lineno}: LaunchConfiguration needs a literal name"
            info.used.add(arg)
    return info


def package_dependencies() -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    tags = ("depend", "exec_depend", "build_depend", "buildtool_depend", "test_depend")
    return {el.text.strip() for t in tags for el in root.iter(t) if el.text}


def installed_programs() -> set[str]:
    text = (REPO / "CMakeLists.txt").read_text()
    out: set[str] = set()
    for block in re.findall(r"install\(\s*PROGRAMS(.*?)DESTINATION", text, flags=re.S):
        out |= {Path(tok).name for tok in block.split() if tok.startswith("scripts/")}
    return out


def executable_module(executable: str) -> Path | None:
    """scripts/<exe> imports ``embodied_wm.ros.<mod>.main``: the module's source file."""
    script = REPO / "scripts" / executable
    if not script.is_file():
        return None  # reported by test_packages_executables_and_files_exist
    m = re.search(r"from\s+(embodied_wm(?:\.\w+)+)\s+import\s+main", script.read_text())
    if not m:
        return None
    path = REPO / "src" / Path(*m.group(1).split(".")).with_suffix(".py")
    return path if path.is_file() else None


def _yaml_params_for(node_name: str) -> set[str]:
    """Parameter names in every config/*.yaml block addressed to ``node_name`` (plain or /**/ wildcard)."""

    def flatten(tree: dict, prefix: str = "") -> dict:
        out: dict = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    names: set[str] = set()
    for y in (REPO / "config").glob("*.yaml"):
        doc = yaml.safe_load(y.read_text())
        if not isinstance(doc, dict):
            continue  # e.g. a ros_gz_bridge topic list
        for key, block in doc.items():
            if str(key).split("/")[-1] == node_name and isinstance(block, dict):
                names |= set(flatten(block.get("ros__parameters", {}) or {}))
    return names


def _source_params(module: Path) -> set[str]:
    """Literal names in declare_parameter(...) calls (including ``d = self.declare_parameter`` aliases),
    ParamSpec(...) entries and module-level DEFAULTS / *_PARAMS dict keys."""
    tree = ast.parse(module.read_text())
    aliases = {"declare_parameter"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute):
            if node.value.attr == "declare_parameter":
                aliases |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (_call_name(node) in aliases or _call_name(node) == "ParamSpec"):
            if (s := _str(node.args[0] if node.args else None)) is not None:
                names.add(s)
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name) and (target.id == "DEFAULTS" or target.id.endswith("_PARAMS")):
                names |= {s for k in node.value.keys if k is not None and (s := _str(k)) is not None}
    return names


def declared_parameters(executable: str, node_name: str | None) -> set[str]:
    P = pytest.importorskip("embodied_wm.ros.params", reason="needs rclpy (source env.sh)")

    names = {"use_sim_time"}
    tables = {"perception_node": P.PERCEPTION_PARAMS, "planner_node": P.PLANNER_PARAMS}
    if executable in tables:
        names |= {s.name for s in tables[executable]}
    module = executable_module(executable)
    if module is not None:
        names |= _source_params(module)
    names |= _yaml_params_for(node_name or executable)
    return names


# --------------------------------------------------------------------------------------- tests
def test_required_launch_files_exist() -> None:
    missing = [n for n in REQUIRED if not (LAUNCH_DIR / n).is_file()]
    assert not missing, missing


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_configurations_are_declared_and_used(name: str) -> None:
    info = parse(LAUNCH_DIR / name)
    funcs = [n.name for n in info.tree.body if isinstance(n, ast.FunctionDef)]
    assert "generate_launch_description" in funcs
    undeclared = info.used - set(info.declared)
    assert not undeclared, f"{name}: LaunchConfiguration without DeclareLaunchArgument: {sorted(undeclared)}"
    unused = set(info.declared) - info.used
    assert not unused, f"{name}: launch arguments never used: {sorted(unused)}"
    for arg, call in info.declared.items():
        assert _kw(call, "description") is not None, f"{name}: argument {arg!r} has no description"


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_packages_executables_and_files_exist(name: str) -> None:
    info = parse(LAUNCH_DIR / name)
    deps = package_dependencies() | {OURS}
    programs = installed_programs()
    problems: list[str] = []
    for call in info.calls:
        cname = _call_name(call)
        if cname == "FindPackageShare":
            pkg = _str(_kw(call, "package", 0))
            if pkg is not None and pkg not in deps:
                problems.append(f"line {call.lineno}: package {pkg!r} is not a dependency in package.xml")
        if cname in ("Node", "LifecycleNode"):
            pkg = _str(_kw(call, "package"))
            exe = _str(_kw(call, "executable"))
            if pkg is None or exe is None:
                problems.append(f"line {call.lineno}: {cname} needs literal package= and executable=")
                continue
            if pkg not in deps:
                problems.append(f"line {call.lineno}: package {pkg!r} is not a dependency in package.xml")
            if pkg == OURS:
                if not (REPO / "scripts" / exe).is_file():
                    problems.append(f"line {call.lineno}: executable {exe!r} not in scripts/")
                if exe not in programs:
                    problems.append(f"line {call.lineno}: executable {exe!r} not installed by CMakeLists.txt")
        if cname == "PathJoinSubstitution" and call.args and isinstance(call.args[0], ast.List):
            parts = call.args[0].elts
            literal = [_str(p) for p in parts]
            # [FindPackageShare("embodied_wm"), "config", "x.yaml"] -> config/x.yaml in this repo.
            first = _resolve(parts[0], info.assigns) if parts else None
            ours = isinstance(first, ast.Call) and _str(_kw(first, "package", 0)) == OURS
            if ours and all(s is not None for s in literal[1:]):
                rel = Path(*[s for s in literal[1:] if s is not None])
                if not (REPO / rel).exists():
                    problems.append(f"line {call.lineno}: {rel} does not exist in the package")
    assert not problems, f"{name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_node_parameter_names_exist(name: str) -> None:
    info = parse(LAUNCH_DIR / name)
    problems: list[str] = []
    for call in info.calls:
        if _call_name(call) not in ("Node", "LifecycleNode") or _str(_kw(call, "package")) != OURS:
            continue
        exe = _str(_kw(call, "executable"))
        assert exe is not None
        node_name = _str(_kw(call, "name"))
        known = declared_parameters(exe, node_name)
        params = _resolve(_kw(call, "parameters"), info.assigns)
        if params is None:
            continue
        assert isinstance(params, ast.List), f"{name}:{call.lineno}: parameters= must be a literal list"
        for item in params.elts:
            item = _resolve(item, info.assigns)
            if isinstance(item, ast.Dict):
                for key in item.keys:
                    k = _str(key)
                    if k is None:
                        problems.append(f"line {call.lineno}: non-literal parameter name")
                    elif k not in known:
                        problems.append(f"line {call.lineno}: {exe} declares no parameter {k!r}")
            else:
                # A parameter file: a literal *.yaml anywhere in it must exist under config/.
                for s in _strings(item):
                    if s.endswith((".yaml", ".yml")) and not (REPO / "config" / Path(s).name).is_file():
                        problems.append(f"line {call.lineno}: parameter file {s} not in config/")
    assert not problems, f"{name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_included_launch_arguments_exist(name: str) -> None:
    info = parse(LAUNCH_DIR / name)
    problems: list[str] = []
    for call in info.calls:
        if _call_name(call) != "IncludeLaunchDescription":
            continue
        source = _kw(call, "launch_description_source", 0)
        targets = [s for s in _strings(source) if s.endswith(".launch.py")] if source is not None else []
        # The package may sit in a variable (share = FindPackageShare("embodied_wm")): follow names.
        names = [n for n in ast.walk(source)] if source is not None else []
        resolved = [_resolve(n, info.assigns) for n in names if isinstance(n, ast.Name)]
        ours = source is not None and (
            OURS in _strings(source) or any(r is not None and OURS in _strings(r) for r in resolved)
        )
        for target in targets:
            if not ours:
                continue  # another package's launch file (e.g. ros_gz_sim): not checkable here
            tpath = LAUNCH_DIR / target
            if not tpath.is_file():
                problems.append(f"line {call.lineno}: includes missing launch/{target}")
                continue
            tdeclared = set(parse(tpath).declared)
            largs = _kw(call, "launch_arguments")
            # {"a": ...}.items() or [("a", ...)]
            keys: list[str] = []
            if isinstance(largs, ast.Call) and isinstance(largs.func, ast.Attribute):
                d = largs.func.value
                if isinstance(d, ast.Dict):
                    keys = [s for k in d.keys if (s := _str(k)) is not None]
            elif isinstance(largs, ast.List):
                keys = [
                    s for t in largs.elts if isinstance(t, ast.Tuple) and (s := _str(t.elts[0])) is not None
                ]
            for k in keys:
                if k not in tdeclared:
                    problems.append(f"line {call.lineno}: {target} declares no argument {k!r}")
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_perception_yaml_runs_with_params_file_keys() -> None:
    """The YAML the launch files pass is the one the node validates (see test_ros_units too)."""
    doc = yaml.safe_load((REPO / "config" / "perception.yaml").read_text())
    (key,) = doc
    assert key.split("/")[-1] == "perception_node" and "ros__parameters" in doc[key]


def test_fastdds_profile() -> None:
    root = ET.parse(REPO / "config" / "fastdds_shm.xml").getroot()
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    shm = [
        d for d in root.iterfind(".//f:transport_descriptor", ns) if d.findtext("f:type", None, ns) == "SHM"
    ]
    assert shm and int(shm[0].findtext("f:segment_size", "0", ns)) == 16 * 1024 * 1024
    types = {d.findtext("f:type", None, ns) for d in root.iterfind(".//f:transport_descriptor", ns)}
    assert "UDPv4" in types
    part = root.find("f:participant", ns)
    assert part is not None and part.get("is_default_profile") == "true"
    assert part.findtext("f:rtps/f:useBuiltinTransports", None, ns) == "false"
    ids = [e.text for e in part.iterfind("f:rtps/f:userTransports/f:transport_id", ns)]
    assert len(ids) == 2
