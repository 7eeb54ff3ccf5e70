"""Every TensorRT name the package uses exists, with a fitting signature, in the real Python bindings of
each supported TensorRT release (tensorrt_bindings.py reads them from PyPI's tensorrt-cu12-bindings
wheels). The names come from our source (tensorrt_api_walk.py), not from a list.

What this verifies: names and signatures, per release, on the code paths that release can reach. What it
does not: that TensorRT parses our ONNX graphs, builds engines or runs them (that needs TensorRT and an
NVIDIA GPU: test_runtime_tensorrt.py's engine tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tensorrt_api_walk as walk
from tensorrt_bindings import PINNED_VERSIONS, BindingsUnavailableError, load_api

SRC = Path(__file__).resolve().parents[1] / "src"
BACKEND = "embodied_wm.runtime.tensorrt_backend"
_APIS: dict[str, walk.Api | str] = {}


def api_for(version: str) -> walk.Api:
    if version not in _APIS:
        try:
            _APIS[version] = walk.Api(load_api(version))
        except BindingsUnavailableError as exc:
            _APIS[version] = str(exc)
    got = _APIS[version]
    if isinstance(got, str):
        pytest.skip(f"TensorRT {version} bindings unavailable: {got}")
    return got


def package_findings(api: walk.Api) -> walk.Findings:
    """The walk over the TensorRT backend, the engine cache and every module that imports the backend."""
    modules = sorted({*walk.modules_using(SRC, BACKEND), "embodied_wm.runtime.engine_cache"})
    return walk.walk(api, walk.package_sources(SRC, modules))


@pytest.mark.parametrize("version", list(PINNED_VERSIONS))
def test_every_tensorrt_name_we_use_exists(version: str) -> None:
    api = api_for(version)
    found = package_findings(api)
    assert not found.problems, "\n".join(sorted(map(str, found.problems)))
    assert found.uses, "the walk found no TensorRT use at all"
    # Where the tensorrt module is introduced, the walk must have followed it into the builder and the
    # runtime: every use is on a class that this release really has.
    owners = {u.owner for u in found.uses}
    assert all(o == "tensorrt" or api.cls(o) is not None for o in owners)
    print(f"\nTensorRT {version} ({PINNED_VERSIONS[version]}): {len(found.names())} names")
    for name in sorted(found.names()):
        print(f"  {name}")


def test_version_checks_select_what_each_release_has() -> None:
    """The 10.x walk reaches the weak-typing path (precision flags, INT8 calibrator), names 11.x lacks;
    the 11.x walk does not reach them, and builds strongly typed."""
    old, new = api_for("10.16.1.11"), api_for("11.4.0.106")
    uses_old = {(u.owner, u.name) for u in package_findings(old).uses}
    uses_new = {(u.owner, u.name) for u in package_findings(new).uses}
    only_old = uses_old - uses_new
    assert only_old, "the 10.x and 11.x walks are identical: no version check was understood"

    def exists(a: walk.Api, owner: str, name: str) -> bool:
        if name == "(subclassed)":
            return a.cls(owner) is not None
        if owner == "tensorrt":
            return a.module_member(name) is not None
        return a.class_member(owner, name) is not None

    gone = {(o, n) for o, n in uses_old if not exists(new, o, n)}
    assert gone, "the 10.x walk reaches no name that 11.x lacks (the weak-typing path was not reached)"
    assert gone <= only_old
    assert ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED") in uses_new


# Small edits to the real backend, each in a different part of it (the engine runner reached through
# TensorRTBackend -> EngineSet -> _Runner, the ONNX parser, the calibrator subclass, the 10.x-only
# branch): the walk of the edited source must report each one.
MUTATIONS = [
    ("ctx.execute_async_v3(", "ctx.execute_async_v2(", "IExecutionContext.execute_async_v2 does not exist"),
    ("engine.get_tensor_dtype(name)", "engine.get_tensor_dtype(name, 0)", "get_tensor_dtype(...) fits no"),
    ("trt.TensorIOMode.INPUT", "trt.TensorIOMode.INPUTS", "TensorIOMode.INPUTS does not exist"),
    ("range(parser.num_errors)", "range(parser.num_error)", "OnnxParser.num_error does not exist"),
    ("def get_batch_size(self)", "def get_batch_sizes(self)", "get_batch_sizes does not exist to override"),
    (
        'if not strong and precision == "int8":  # TensorRT 10',
        'if precision == "int8":  # TensorRT 10',
        "11.4.0.106: tensorrt.IInt8EntropyCalibrator2 does not exist",
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), MUTATIONS, ids=[m[1] for m in MUTATIONS])
def test_walk_catches_edits_to_the_real_backend(old: str, new: str, expected: str) -> None:
    api = api_for("11.4.0.106" if "11.4" in expected else "10.16.1.11")
    modules = sorted({*walk.modules_using(SRC, BACKEND), "embodied_wm.runtime.engine_cache"})
    sources = walk.package_sources(SRC, modules)
    assert sources[BACKEND].count(old) == 1, f"the backend no longer contains {old!r}: update MUTATIONS"
    sources[BACKEND] = sources[BACKEND].replace(old, new)
    problems = sorted(map(str, walk.walk(api, sources).problems))
    assert any(expected in p for p in problems), problems


# ---------------------------------------------------------------------------------------------------
# The walk itself: it must catch what it claims to catch.
# ---------------------------------------------------------------------------------------------------
HEADER = """
import importlib

def load():
    return importlib.import_module("tensorrt")
"""


def problems_in(body: str, version: str) -> list[str]:
    found = walk.walk(api_for(version), {"m": HEADER + body})
    return sorted(p.what for p in found.problems)


def uses_in(body: str, version: str) -> set[str]:
    return walk.walk(api_for(version), {"m": HEADER + body}).names()


def test_walk_reports_a_misspelled_method_reached_through_our_own_code() -> None:
    body = """
def make(trt):
    return trt.Builder(trt.Logger(trt.Logger.WARNING))

class Holder:
    def __init__(self, builder):
        self.builder = builder

    def network(self):
        return self.builder.create_netwrk(0)

def main():
    trt = load()
    Holder(make(trt)).network()
"""
    assert problems_in(body, "10.16.1.11") == ["tensorrt 10.16.1.11: Builder.create_netwrk does not exist"]
    assert problems_in(body.replace("create_netwrk", "create_network"), "10.16.1.11") == []


def test_walk_follows_return_types_and_our_containers() -> None:
    body = """
class Engines:
    def __init__(self):
        self.engines = {}

def main(data):
    trt = load()
    runtime = trt.Runtime(trt.Logger())
    held = Engines()
    held.engines["encoder"] = runtime.deserialize_cuda_engine(data)
    ctx = held.engines["encoder"].create_execution_context()
    ctx.execute_async_v4(0)
"""
    assert problems_in(body, "11.4.0.106") == [
        "tensorrt 11.4.0.106: IExecutionContext.execute_async_v4 does not exist"
    ]


def test_walk_checks_removed_flags_unless_a_version_check_guards_them() -> None:
    unguarded = """
def build():
    trt = load()
    config = trt.Builder(trt.Logger()).create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
"""
    assert problems_in(unguarded, "10.3.0") == []
    assert problems_in(unguarded, "11.0.0.114") == ["tensorrt 11.0.0.114: BuilderFlag.FP16 does not exist"]
    guarded = """
def weak(trt):
    return hasattr(trt.BuilderFlag, "FP16")

def build():
    trt = load()
    config = trt.Builder(trt.Logger()).create_builder_config()
    if weak(trt):
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.set_flag(trt.BuilderFlag.TF32)
"""
    assert problems_in(guarded, "11.0.0.114") == []
    assert "BuilderFlag.FP16" in uses_in(guarded, "10.3.0")
    assert "BuilderFlag.FP16" not in uses_in(guarded, "11.0.0.114")
    assert "BuilderFlag.TF32" in uses_in(guarded, "11.0.0.114")


def test_walk_checks_signatures_and_property_writes() -> None:
    body = """
def build():
    trt = load()
    builder = trt.Builder(trt.Logger())
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE)
    config.set_flag(trt.MemoryPoolType.WORKSPACE)
    builder.create_network(0, 1)
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(b"")
    engine.num_io_tensors = 3
"""
    got = problems_in(body, "10.16.1.11")
    assert len(got) == 4, got
    assert any("set_memory_pool_limit" in p and "missing ['pool_size']" in p for p in got)
    assert any("set_flag" in p and "MemoryPoolType is not ['BuilderFlag']" in p for p in got)
    assert any("create_network" in p and "2 positional > 1" in p for p in got)
    assert any("ICudaEngine.num_io_tensors is not a settable property" in p for p in got)


def test_walk_checks_overrides_of_tensorrt_base_classes() -> None:
    body = """
def calibrator():
    trt = load()

    class Calib(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch(self, names):
            return None

        def get_batches(self, names):
            return None

        def get_batch_size(self, a, b):
            return 1

    return Calib()
"""
    got = problems_in(body, "10.3.0")
    assert got == [
        "tensorrt 10.3.0: IInt8EntropyCalibrator2.get_batch_size passes [0] arguments, "
        "our override takes 2..2",
        "tensorrt 10.3.0: IInt8EntropyCalibrator2.get_batches does not exist to override",
    ], got
    assert any("IInt8EntropyCalibrator2 does not exist" in p for p in problems_in(body, "11.4.0.106"))


def test_walk_reports_uses_it_cannot_resolve() -> None:
    body = """
def main():
    trt = load()
    network = trt.Builder(trt.Logger()).create_network(0)
    return network[0].name
"""
    got = problems_in(body, "10.16.1.11")
    assert got == ["unresolved: .name on subscript"], got


def test_signature_parser_reads_pybind_overloads() -> None:
    doc: Any = api_for("10.16.1.11").class_member("Runtime", "deserialize_cuda_engine")
    sigs = walk.parse_signatures(doc["doc"])
    # 10.16 has three overloads: host memory, IStreamReader and IStreamReaderV2.
    assert len(sigs) == 3
    assert [p.name for p in sigs[0].params] == ["self", "serialized_engine"]
    assert all(walk.trt_types_in(s.returns) == {"ICudaEngine"} for s in sigs)
    assert set().union(*(walk.trt_types_in(s.params[1].annotation) for s in sigs[1:])) == {
        "IStreamReader",
        "IStreamReaderV2",
    }
