"""The real TensorRT Python API of a given release, read from PyPI's ``tensorrt-cu12-bindings`` wheel.

The wheel holds the pybind11 module ``tensorrt_bindings/tensorrt.so`` but not the TensorRT libraries
(``tensorrt-cu12-libs`` on PyPI is a stub that downloads from NVIDIA's index), so the module cannot be
imported as shipped: its loader wants ``libnvinfer.so.N``, ``libnvinfer_plugin.so.N`` and
``libnvonnxparser.so.N``. From the libraries the module needs only nine C entry points
(``createInferBuilder_INTERNAL``, ``createInferRuntime_INTERNAL``, ``getPluginRegistry``, ...), called when
a Builder/Runtime/OnnxParser is constructed or plugins are initialised, never while the module registers
its classes. So we compile stand-in libraries whose entry points abort the process if ever called,
import the module with them, and read what pybind11 registered: every class, method, property (with
its getter's signature and whether it has a setter), enum member and function, with pybind11's
signature lines (parameter names, types, defaults, return types) from ``__doc__``. Nothing TensorRT
computes is run; the result says which names and signatures exist in that release, not that engines
build or run.

Wheels are fetched with ``pip download --no-deps`` (an ordinary wheel download, served from pip's
cache when present) into ``$EMBODIED_WM_CACHE_DIR`` (default ``~/.cache/embodied_wm``)
``/tensorrt-bindings/``; the extracted API is cached there as JSON per version and Python tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

#: The releases we check against, and why each one.
PINNED_VERSIONS: dict[str, str] = {
    "10.3.0": "JetPack 6.1 / 6.2 (Jetson Orin)",
    "10.16.1.11": "newest 10.x on PyPI (desktop / server)",
    "11.0.0.114": "first 11.x: weak typing and INT8 calibrators removed",
    "11.4.0.106": "newest 11.x on PyPI",
}

_ENTRY_POINTS = (
    "createInferBuilder_INTERNAL",
    "createInferRefitter_INTERNAL",
    "createInferRuntime_INTERNAL",
    "createNvOnnxParserRefitter_INTERNAL",
    "createNvOnnxParser_INTERNAL",
    "getBuilderPluginRegistry",
    "getNvOnnxParserVersion",
    "getPluginRegistry",
    "initLibNvInferPlugins",
)

# Runs in a child process (the stand-in libraries are on its LD_LIBRARY_PATH and two releases cannot
# share one interpreter). Prints the API as JSON.
_DUMP = r"""
import inspect, json, sys
sys.path.insert(0, sys.argv[1])
import tensorrt_bindings as trt

def member(owner, name):
    try:
        v = inspect.getattr_static(owner, name)
    except AttributeError:
        return None
    if isinstance(v, property):
        return {"kind": "property", "doc": (v.fget.__doc__ or "") if v.fget else "",
                "settable": v.fset is not None}
    if inspect.isclass(v):
        return {"kind": "class", "qualname": v.__qualname__}
    if isinstance(v, (staticmethod, classmethod)):
        v = v.__func__
    if callable(v) and not isinstance(v, owner):  # enum members are instances of their class
        return {"kind": "method", "doc": getattr(v, "__doc__", "") or ""}
    return {"kind": "value", "type": type(v).__qualname__}

classes = {}
def add_class(c):
    if c.__qualname__ in classes:
        return
    entry = {"bases": [b.__qualname__ for b in c.__mro__[1:]], "members": {}}
    classes[c.__qualname__] = entry
    for n in dir(c):
        m = member(c, n)
        if m is None:
            continue
        entry["members"][n] = m
        if m["kind"] == "class":
            add_class(getattr(c, n))

module = {}
for n in dir(trt):
    o = getattr(trt, n)
    if inspect.isclass(o):
        module[n] = {"kind": "class", "qualname": o.__qualname__}
        add_class(o)
    elif callable(o):
        try:
            sig = str(inspect.signature(o))
        except (TypeError, ValueError):
            sig = ""
        module[n] = {"kind": "function", "doc": o.__doc__ or "", "signature": sig}
    else:
        module[n] = {"kind": "value", "type": type(o).__qualname__}
json.dump({"version": trt.__version__, "module": module, "classes": classes}, sys.stdout)
"""


class BindingsUnavailableError(Exception):
    """The wheel or the means to read it cannot be had here (the reason is the message)."""


#: Set after a failed download, so an offline machine pays pip's network timeout once, not per version.
_download_failure: str | None = None


def cache_root() -> Path:
    base = os.environ.get("EMBODIED_WM_CACHE_DIR") or str(Path.home() / ".cache" / "embodied_wm")
    return Path(base) / "tensorrt-bindings"


def _wheel_for(version: str, root: Path) -> Path:
    pattern = f"tensorrt_cu12_bindings-{version}-*.whl"
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found = [w for w in sorted(root.glob(pattern)) if f"-{tag}-" in w.name]
    if found:
        return found[0]
    global _download_failure
    if _download_failure is not None:
        raise BindingsUnavailableError(f"{_download_failure} (not retried for {version})")
    if platform.system() != "Linux":
        raise BindingsUnavailableError(
            f"tensorrt-cu12-bindings wheels are Linux only (this is {platform.system()})"
        )
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "--timeout", "20", "--retries", "1", "-q", "-d", str(root)]
    cmd.append(f"tensorrt-cu12-bindings=={version}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BindingsUnavailableError(f"pip download tensorrt-cu12-bindings=={version}: {exc}") from exc
    found = [w for w in sorted(root.glob(pattern)) if f"-{tag}-" in w.name]
    if proc.returncode != 0 or not found:
        lines = [
            ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip() and "is ignored" not in ln
        ]
        why = lines[-1] if lines else f"exit {proc.returncode}"
        _download_failure = f"pip download tensorrt-cu12-bindings=={version} failed: {why}"
        raise BindingsUnavailableError(_download_failure)
    return found[0]


def _stub_libs(major: str, root: Path) -> Path:
    """Stand-in libnvinfer/libnvinfer_plugin/libnvonnxparser .so.<major> (see the module docstring)."""
    out = root / f"stub-libs-{major}"
    names = [f"lib{n}.so.{major}" for n in ("nvinfer", "nvinfer_plugin", "nvonnxparser")]
    if all((out / n).is_file() for n in names):
        return out
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise BindingsUnavailableError(
            "no C compiler (cc/gcc/clang) to build the stand-in TensorRT libraries"
        )
    out.mkdir(parents=True, exist_ok=True)
    src = out / "stub.c"
    body = "".join(
        f'void *{fn}(void) {{ fputs("stand-in TensorRT library: {fn} called\\n", stderr); abort(); }}\n'
        for fn in _ENTRY_POINTS
    )
    src.write_text("#include <stdio.h>\n#include <stdlib.h>\n" + body)
    for n in names:
        proc = subprocess.run(
            [cc, "-shared", "-fPIC", "-o", str(out / n), str(src), f"-Wl,-soname,{n}"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise BindingsUnavailableError(f"building stand-in {n} failed: {proc.stderr.strip()[-300:]}")
    return out


def load_api(version: str) -> dict[str, Any]:
    """The API of tensorrt-cu12-bindings ``version`` (see the module docstring). Raises
    BindingsUnavailableError with the reason when it cannot be had."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    digest = hashlib.sha256(_DUMP.encode()).hexdigest()[:12]
    cached = root / f"api-{version}-{tag}-{digest}.json"
    if cached.is_file():
        return json.loads(cached.read_text())  # type: ignore[no-any-return]
    wheel = _wheel_for(version, root)
    extract = root / wheel.stem
    if not (extract / "tensorrt_bindings" / "tensorrt.so").is_file():
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(extract)
    libs = _stub_libs(version.split(".")[0], root)
    env = {**os.environ, "LD_LIBRARY_PATH": f"{libs}:{os.environ.get('LD_LIBRARY_PATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-c", _DUMP, str(extract)], capture_output=True, text=True, env=env, timeout=120
    )
    if proc.returncode != 0:
        raise BindingsUnavailableError(
            f"reading tensorrt_bindings {version} failed: {proc.stderr.strip().splitlines()[-1:]}"
        )
    api: dict[str, Any] = json.loads(proc.stdout)
    if api.get("version") != version:
        raise BindingsUnavailableError(
            f"{wheel.name} reports version {api.get('version')}, expected {version}"
        )
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(api))
    tmp.replace(cached)
    return api
