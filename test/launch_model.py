"""A small model of ``ros2 launch`` for tests: it runs launch/*.launch.py and evaluates the description
the way launch does, without the launch packages (they cannot be installed here; see DESIGN.md).

The launch file is executed with stand-ins for the parts of the launch / launch_ros API it imports
(a name it uses that is not modelled fails the import, so nothing is silently ignored). The description
is then evaluated in order, as launch 3.4.3 / launch_ros 0.26.6 (the Jazzy releases) do:

* ``name:=value`` arguments become launch configurations; an empty value is rejected as malformed;
* DeclareLaunchArgument sets its default when the configuration is not set yet, fails without one,
  and checks ``choices``;
* a condition (IfCondition / UnlessCondition) is evaluated when its action is reached: ``true``/``1``
  or ``false``/``0``, anything else is an error;
* SetEnvironmentVariable changes the environment of the processes started *after* it, wherever it is
  (an included file's variable does not reach the nodes declared before the include);
* IncludeLaunchDescription sets its launch arguments as launch configurations (not scoped: they stay
  set afterwards) and evaluates the included file in the same context; a required argument of the
  included file must be among them; another package's launch file is recorded, not evaluated;
* Node / LifecycleNode / ExecuteProcess become :class:`Process` records: the command line launch would
  run (parameter dicts written to a parameter file, as launch_ros does), the evaluated parameters
  (values YAML-typed unless wrapped in ``ParameterValue(value_type=str)``), the environment changes in
  effect, and the ``on_exit`` handler, which :func:`process_exited` calls like launch does.

These behaviours come from the releases' sources and from running the launch files with them once
(DESIGN.md lists what was checked); this model is a test aid, not launch.

``python test/launch_model.py`` prints the README's "Launch arguments" tables.
"""

from __future__ import annotations

import abc
import importlib.util
import math
import os
import shutil
import sys
import tempfile
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH_DIR = REPO / "launch"
OURS = "embodied_wm"


class LaunchError(Exception):
    """What ``ros2 launch`` would report before or while starting (the launch fails)."""


# ----------------------------------------------------------------------------------- substitutions
class Substitution(abc.ABC):
    """launch's substitution interface: every modelled kind evaluates and describes itself."""

    @abc.abstractmethod
    def perform(self, ctx: Context) -> str: ...

    @abc.abstractmethod
    def describe(self) -> str:
        """The value as a person reads it in ``--show-args`` (not evaluated)."""


class TextSubstitution(Substitution):
    def __init__(self, *, text: str) -> None:
        self.text = text

    def perform(self, ctx: Context) -> str:
        return self.text

    def describe(self) -> str:
        return self.text


class LaunchConfiguration(Substitution):
    def __init__(self, variable_name: str, *, default: Any = None) -> None:
        self.variable_name = variable_name
        self.default = default

    def perform(self, ctx: Context) -> str:
        if self.variable_name in ctx.configs:
            return ctx.configs[self.variable_name]
        if self.default is not None:
            return perform(ctx, self.default)
        raise LaunchError(f"launch configuration '{self.variable_name}' does not exist")

    def describe(self) -> str:
        return f"$(var {self.variable_name})"


class PathJoinSubstitution(Substitution):
    def __init__(self, substitutions: Sequence[Any]) -> None:
        self.parts = list(substitutions)

    def perform(self, ctx: Context) -> str:
        return os.path.join(*[perform(ctx, p) for p in self.parts])

    def describe(self) -> str:
        return "/".join(describe(p) for p in self.parts)


class PythonExpression(Substitution):
    def __init__(self, expression: Sequence[Any]) -> None:
        self.expression = list(expression)

    def perform(self, ctx: Context) -> str:
        # launch evaluates the concatenated text with the math module available.
        return str(eval("".join(perform(ctx, p) for p in self.expression), {"math": math}))

    def describe(self) -> str:
        return "$(eval " + "".join(describe(p) for p in self.expression) + ")"


class FindPackageShare(Substitution):
    def __init__(self, package: str) -> None:
        self.package = package

    def perform(self, ctx: Context) -> str:
        if self.package != OURS:
            raise ExternalPackageError(self.package)
        # This repository's launch/, config/, models/ and worlds/ are what share/embodied_wm holds.
        return str(REPO)

    def describe(self) -> str:
        return f"$(find-pkg-share {self.package})"


class FindExecutable(Substitution):
    def __init__(self, *, name: str) -> None:
        self.name = name

    def perform(self, ctx: Context) -> str:
        found = shutil.which(self.name, path=ctx.environment().get("PATH", ""))
        if found is None:
            raise LaunchError(f"executable '{self.name}' not found on the PATH")
        return found

    def describe(self) -> str:
        return f"$(find-exec {self.name})"


class ExternalPackageError(Exception):
    """A path inside another package's share directory (not evaluated here)."""


def perform(ctx: Context, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Substitution):
        return value.perform(ctx)
    if isinstance(value, list | tuple):
        return "".join(perform(ctx, v) for v in value)
    raise LaunchError(f"cannot substitute {value!r}")


def describe(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Substitution):
        return value.describe()
    if isinstance(value, list | tuple):
        return "".join(describe(v) for v in value)
    return repr(value)


# -------------------------------------------------------------------------------------- conditions
class IfCondition:
    def __init__(self, predicate_expression: Any) -> None:
        self.expression = predicate_expression

    def evaluate(self, ctx: Context) -> bool:
        text = perform(ctx, self.expression).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise LaunchError(f"Unable to evaluate condition '{text}': expected true/false/1/0")


class UnlessCondition(IfCondition):
    def evaluate(self, ctx: Context) -> bool:
        return not super().evaluate(ctx)


# ----------------------------------------------------------------------------------------- actions
class Action:
    def __init__(self, *, condition: IfCondition | None = None) -> None:
        self.condition = condition


class DeclareLaunchArgument(Action):
    def __init__(
        self,
        name: str,
        *,
        default_value: Any = None,
        description: str | None = None,
        choices: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name = name
        self.default_value = default_value
        self.description = description
        self.choices = list(choices) if choices is not None else None


class SetEnvironmentVariable(Action):
    def __init__(self, name: Any, value: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name, self.value = name, value


class PythonLaunchDescriptionSource:
    def __init__(self, launch_file_path: Any) -> None:
        self.path = launch_file_path


class IncludeLaunchDescription(Action):
    def __init__(
        self, launch_description_source: Any, *, launch_arguments: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.source = launch_description_source
        self.launch_arguments = list(launch_arguments or [])


class ExecuteProcess(Action):
    def __init__(
        self,
        *,
        cmd: Sequence[Any],
        name: Any = None,
        on_exit: Any = None,
        additional_env: Mapping[str, Any] | None = None,
        output: Any = "log",
        **kwargs: Any,
    ) -> None:
        super().__init__(condition=kwargs.pop("condition", None))
        unknown = set(kwargs) - {"cwd", "shell", "emulate_tty", "sigterm_timeout", "sigkill_timeout"}
        if unknown:
            raise LaunchError(f"ExecuteProcess: argument(s) not modelled: {sorted(unknown)}")
        self.cmd = list(cmd)
        self.name = name
        self.on_exit = on_exit
        self.additional_env = dict(additional_env or {})
        self.output = output


class Node(ExecuteProcess):
    def __init__(
        self,
        *,
        executable: Any,
        package: Any = None,
        name: Any = None,
        namespace: Any = None,
        parameters: Sequence[Any] | None = None,
        ros_arguments: Sequence[Any] | None = None,
        arguments: Sequence[Any] | None = None,
        remappings: Sequence[tuple[Any, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(cmd=[], name=name, **kwargs)
        self.package, self.executable, self.namespace = package, executable, namespace
        self.parameters = list(parameters or [])
        self.ros_arguments = list(ros_arguments or [])
        self.arguments = list(arguments or [])
        self.remappings = list(remappings or [])


class LifecycleNode(Node):
    def __init__(self, *, name: Any, namespace: Any, **kwargs: Any) -> None:
        super().__init__(name=name, namespace=namespace, **kwargs)


class LogInfo(Action):
    def __init__(self, *, msg: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.msg = msg


class Shutdown(Action):
    def __init__(self, *, reason: Any = "reason not given", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason


class TimerAction(Action):
    def __init__(self, *, period: Any, actions: Sequence[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.period = period
        self.actions = list(actions)


class ParameterValue:
    def __init__(self, value: Any, *, value_type: Any = None) -> None:
        self.value, self.value_type = value, value_type


class LaunchDescription:
    def __init__(self, initial_entities: Sequence[Any] | None = None) -> None:
        self.entities = list(initial_entities or [])


# The modules the launch files import, and what each provides.
_MODULES: dict[str, dict[str, Any]] = {
    "launch": {"LaunchDescription": LaunchDescription},
    "launch.actions": {
        c.__name__: c
        for c in (
            DeclareLaunchArgument,
            SetEnvironmentVariable,
            IncludeLaunchDescription,
            ExecuteProcess,
            LogInfo,
            Shutdown,
            TimerAction,
        )
    },
    "launch.conditions": {"IfCondition": IfCondition, "UnlessCondition": UnlessCondition},
    "launch.substitutions": {
        c.__name__: c
        for c in (
            LaunchConfiguration,
            PathJoinSubstitution,
            PythonExpression,
            TextSubstitution,
            FindExecutable,
        )
    },
    "launch.launch_description_sources": {"PythonLaunchDescriptionSource": PythonLaunchDescriptionSource},
    "launch_ros": {},
    "launch_ros.actions": {"Node": Node, "LifecycleNode": LifecycleNode},
    "launch_ros.descriptions": {"ParameterValue": ParameterValue},
    "launch_ros.substitutions": {"FindPackageShare": FindPackageShare},
}


@contextmanager
def _stand_in_modules() -> Iterator[None]:
    saved = {name: sys.modules.get(name) for name in _MODULES}
    try:
        for name, attrs in _MODULES.items():
            module = types.ModuleType(name, f"stand-in for {name} (test/launch_model.py)")
            module.__dict__.update(attrs)
            sys.modules[name] = module
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load(path: Path) -> tuple[types.ModuleType, LaunchDescription]:
    """Import a launch file with the stand-ins and call its generate_launch_description()."""
    spec = importlib.util.spec_from_file_location(f"launch_file_{path.stem.replace('.', '_')}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with _stand_in_modules():
        try:
            spec.loader.exec_module(module)
        except ImportError as exc:
            raise LaunchError(f"{path.name} uses launch API this model does not know: {exc}") from exc
        description = module.generate_launch_description()
    if not isinstance(description, LaunchDescription):
        raise LaunchError(f"{path.name}: generate_launch_description() returned {type(description)}")
    return module, description


# -------------------------------------------------------------------------------------- evaluation
@dataclass
class Argument:
    name: str
    default: Any
    description: str
    choices: list[str] | None
    launch_file: str


@dataclass
class Process:
    """One process launch would start."""

    action: ExecuteProcess
    launch_file: str
    #: The node name (``name=``) or the executable's file name.
    name: str
    cmd: list[str]
    #: Environment variables launch sets for it (on top of the environment ros2 launch runs in).
    env: dict[str, str]
    #: Node only: parameter files and evaluated parameter dicts, in order (later ones win).
    parameters: list[Path | dict[str, Any]] = field(default_factory=list)
    #: Node only: the ROS arguments after --ros-args (remaps, log level; not the parameter files).
    ros_arguments: list[str] = field(default_factory=list)

    @property
    def executable(self) -> str:
        return Path(self.cmd[0]).name

    def parameter_values(self) -> dict[str, Any]:
        """The node's parameters as the files and dicts set them (files: this node's block)."""
        out: dict[str, Any] = {}
        for item in self.parameters:
            if isinstance(item, dict):
                out.update(item)
                continue
            doc = yaml.safe_load(Path(item).read_text()) or {}
            for key, block in doc.items():
                if str(key).split("/")[-1] in (self.name, "**") and isinstance(block, dict):
                    out.update(_flatten(block.get("ros__parameters", {}) or {}))
        return out

    def command_line(self, tmp: Path) -> list[str]:
        """The command launch would run: parameter dicts become a parameter file, as launch_ros does."""
        if not isinstance(self.action, Node):
            return list(self.cmd)
        cmd = [*self.cmd, "--ros-args", *self.ros_arguments]
        for i, item in enumerate(self.parameters):
            if isinstance(item, dict):
                path = tmp / f"{self.name}_params_{i}.yaml"
                path.write_text(yaml.safe_dump({"/**": {"ros__parameters": item}}))
                item = path
            cmd += ["--params-file", str(item)]
        return cmd


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
    return out


@dataclass
class Context:
    configs: dict[str, str] = field(default_factory=dict)
    #: Environment changes made by the launch so far (on top of ``base_env``).
    env: dict[str, str] = field(default_factory=dict)
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    is_shutdown: bool = False

    def environment(self) -> dict[str, str]:
        return {**self.base_env, **self.env}

    # launch's LaunchContext exposes the configurations under this name.
    @property
    def launch_configurations(self) -> dict[str, str]:
        return self.configs


@dataclass
class Launch:
    file: str
    processes: list[Process]
    arguments: dict[str, Argument]
    configs: dict[str, str]
    external_includes: list[str]


def parse_cli(argv: Sequence[str]) -> dict[str, str]:
    """``name:=value`` arguments as ros2 launch takes them (an empty value is malformed)."""
    out: dict[str, str] = {}
    for item in argv:
        name, sep, value = item.partition(":=")
        if not sep or not name or value == "":
            raise LaunchError(f"malformed launch argument '{item}', expected format '<name>:=<value>'")
        out[name] = value
    return out


def evaluate(launch_file: str, argv: Sequence[str] = (), base_env: Mapping[str, str] | None = None) -> Launch:
    """Evaluate launch/<launch_file> with ``name:=value`` arguments, as ``ros2 launch`` would start it."""
    ctx = Context(configs=parse_cli(argv))
    if base_env is not None:
        ctx.base_env = dict(base_env)
    result = Launch(launch_file, [], {}, {}, [])
    _evaluate_file(LAUNCH_DIR / launch_file, ctx, result, include_arguments=None)
    result.configs = dict(ctx.configs)
    return result


def _evaluate_file(path: Path, ctx: Context, result: Launch, include_arguments: list[str] | None) -> None:
    _module, description = load(path)
    if include_arguments is not None:
        for entity in description.entities:
            if isinstance(entity, DeclareLaunchArgument) and entity.default_value is None:
                if entity.name not in include_arguments:
                    raise LaunchError(
                        f"Included launch description missing required argument '{entity.name}'"
                    )
    for entity in description.entities:
        _execute(entity, ctx, result, path.name)


def _execute(entity: Any, ctx: Context, result: Launch, file: str) -> None:
    if isinstance(entity, Action) and entity.condition is not None and not entity.condition.evaluate(ctx):
        if isinstance(entity, DeclareLaunchArgument):
            result.arguments.setdefault(entity.name, _argument(entity, file))
        return
    if isinstance(entity, DeclareLaunchArgument):
        result.arguments.setdefault(entity.name, _argument(entity, file))
        if entity.name not in ctx.configs:
            if entity.default_value is None:
                raise LaunchError(
                    f"Required launch argument '{entity.name}' (description: '{entity.description}') "
                    "was not provided"
                )
            ctx.configs[entity.name] = perform(ctx, entity.default_value)
        value = ctx.configs[entity.name]
        if entity.choices is not None and value not in entity.choices:
            raise LaunchError(
                f"Argument '{entity.name}' provided value '{value}' is not valid. "
                f"Valid options are: {entity.choices}"
            )
    elif isinstance(entity, SetEnvironmentVariable):
        ctx.env[perform(ctx, entity.name)] = perform(ctx, entity.value)
    elif isinstance(entity, IncludeLaunchDescription):
        try:
            target = Path(perform(ctx, entity.source.path))
        except ExternalPackageError as exc:
            result.external_includes.append(f"{exc}: {describe(entity.source.path)}")
            return
        names = [perform(ctx, k) for k, _ in entity.launch_arguments]
        for key, value in entity.launch_arguments:
            ctx.configs[perform(ctx, key)] = perform(ctx, value)
        _evaluate_file(target, ctx, result, include_arguments=names)
    elif isinstance(entity, Node):
        result.processes.append(_node_process(entity, ctx, file))
    elif isinstance(entity, ExecuteProcess):
        cmd = [perform(ctx, part) for part in entity.cmd]
        env = {**ctx.env, **{k: perform(ctx, v) for k, v in entity.additional_env.items()}}
        name = perform(ctx, entity.name) if entity.name is not None else Path(cmd[0]).name
        result.processes.append(Process(entity, file, name, cmd, env))
    elif isinstance(entity, LaunchDescription):
        for sub in entity.entities:
            _execute(sub, ctx, result, file)
    else:
        raise LaunchError(f"{file}: {type(entity).__name__} at the top level is not modelled")


def _argument(entity: DeclareLaunchArgument, file: str) -> Argument:
    return Argument(entity.name, entity.default_value, entity.description or "", entity.choices, file)


def _executable_path(package: str, executable: str) -> str:
    """lib/<package>/<executable> of the install tree (what ros2 run and launch_ros execute)."""
    if package == OURS:
        return str(REPO / "install" / OURS / "lib" / OURS / executable)
    return f"<{package}>/lib/{package}/{executable}"


def _node_process(node: Node, ctx: Context, file: str) -> Process:
    package = perform(ctx, node.package)
    exe = perform(ctx, node.executable)
    cmd = [_executable_path(package, exe), *[perform(ctx, a) for a in node.arguments]]
    ros_args: list[str] = []
    name = perform(ctx, node.name) if node.name is not None else ""
    if name:
        ros_args += ["-r", f"__node:={name}"]
    namespace = perform(ctx, node.namespace) if node.namespace is not None else ""
    if namespace:
        ros_args += ["-r", f"__ns:={namespace if namespace.startswith('/') else '/' + namespace}"]
    for src, dst in node.remappings:
        ros_args += ["-r", f"{perform(ctx, src)}:={perform(ctx, dst)}"]
    ros_args += [perform(ctx, a) for a in node.ros_arguments]
    params: list[Path | dict[str, Any]] = []
    for item in node.parameters:
        if isinstance(item, dict):
            params.append(_flatten({k: _param_value(ctx, v) for k, v in item.items()}))
        else:
            params.append(Path(perform(ctx, item)))
    env = {**ctx.env, **{k: perform(ctx, v) for k, v in node.additional_env.items()}}
    return Process(node, file, name or exe, cmd, env, params, ros_args)


def _param_value(ctx: Context, value: Any) -> Any:
    """launch_ros: ParameterValue(value_type=str) stays text; other substitutions are YAML-typed; Python
    literals are kept."""
    if isinstance(value, ParameterValue):
        text = perform(ctx, value.value) if not isinstance(value.value, bool | int | float) else value.value
        if value.value_type is str:
            return str(text)
        if value.value_type is float:
            return float(text)
        return yaml.safe_load(text) if isinstance(text, str) else text
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {k: _param_value(ctx, v) for k, v in value.items()}
    return yaml.safe_load(perform(ctx, value))


# -------------------------------------------------------------------------------------------- events
@dataclass
class ProcessExited:
    """What launch hands an ``on_exit`` callable (launch.events.process.ProcessExited)."""

    action: ExecuteProcess
    process_name: str
    returncode: int
    pid: int = 0
    cmd: list[str] = field(default_factory=list)


def process_exited(process: Process, returncode: int, launch: Launch, is_shutdown: bool = False) -> list[Any]:
    """Call the process's ``on_exit`` as launch does when it exits; the actions it returns."""
    handler: Callable[..., Any] | Sequence[Any] | None = process.action.on_exit
    if handler is None:
        return []
    if not callable(handler):
        return list(handler)
    ctx = Context(configs=dict(launch.configs), is_shutdown=is_shutdown)
    event = ProcessExited(process.action, f"{process.name}-1", returncode, cmd=process.cmd)
    return list(handler(event, ctx) or [])


def shutdowns(actions: Sequence[Any], launch: Launch) -> list[tuple[float, str]]:
    """(delay in s, reason) of every Shutdown among ``actions`` (a TimerAction delays its actions)."""
    ctx = Context(configs=dict(launch.configs))
    out: list[tuple[float, str]] = []
    for action in actions:
        if isinstance(action, Shutdown):
            out.append((0.0, perform(ctx, action.reason)))
        elif isinstance(action, TimerAction):
            delay = (
                float(perform(ctx, action.period))
                if not isinstance(action.period, int | float)
                else action.period
            )
            out += [(delay + d, r) for d, r in shutdowns(action.actions, launch)]
    return out


# ---------------------------------------------------------------------------------------- README
def declared_arguments(launch_file: str) -> list[Argument]:
    """The arguments launch/<launch_file> declares itself, in order (what --show-args lists first)."""
    _module, description = load(LAUNCH_DIR / launch_file)
    return [_argument(e, launch_file) for e in description.entities if isinstance(e, DeclareLaunchArgument)]


def readme_tables() -> str:
    """The README's "Launch arguments" tables, one per launch file."""
    blocks = []
    for path in sorted(LAUNCH_DIR.glob("*.launch.py")):
        rows = ["| argument | default | description |", "|---|---|---|"]
        for arg in declared_arguments(path.name):
            default = "(required)" if arg.default is None else f"`{describe(arg.default)}`"
            if default == "``":
                default = "`''`"
            choices = " \\| ".join(arg.choices or [])
            desc = arg.description.replace("|", "\\|") + (f" (one of: {choices})" if arg.choices else "")
            rows.append(f"| `{arg.name}` | {default} | {desc} |")
        blocks.append(f"`{path.name}`\n\n" + "\n".join(rows))
    return "\n\n".join(blocks) + "\n"


def executable_source(executable: str) -> str:
    """The source of the module whose ``main`` scripts/<executable> runs."""
    import re

    script = (REPO / "scripts" / executable).read_text()
    m = re.search(r"from\s+(embodied_wm(?:\.\w+)+)\s+import\s+main", script)
    if m is None:
        raise LaunchError(f"scripts/{executable} runs no embodied_wm main()")
    return (REPO / "src" / Path(*m.group(1).split("."))).with_suffix(".py").read_text()


def temp_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ewm-launch-"))


if __name__ == "__main__":
    sys.stdout.write(readme_tables())
