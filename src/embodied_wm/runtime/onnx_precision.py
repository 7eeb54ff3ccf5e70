"""Reduced-precision ONNX graphs for strongly typed TensorRT builds (TensorRT >= 11, TensorRT-RTX).

TensorRT 11 removed weak typing: there is no ``BuilderFlag.FP16``/``INT8`` and no INT8 calibrator, and
an engine's precision is the precision of the ONNX graph it is built from. NVIDIA's replacements are a
mixed-precision fp16 graph (their tool: ModelOpt AutoCast) and explicit quantization, Q/DQ
(QuantizeLinear/DequantizeLinear) nodes in the graph. We make both from our fp32 export with ONNX
Runtime's own tooling, which is already a dependency, so both transformations run and are tested on a
CPU:

* fp16: every float tensor and weight in fp16 except the graph inputs/outputs, which stay fp32 (the
  backend feeds and reads fp32), and normalisation and reduction layers, which stay fp32 (their
  sums overflow or lose precision in fp16).
* int8: post-training static quantization in QDQ form, with scales from calibration data (the same
  bag → Pipeline batches as the TensorRT 10 calibrator) and the entropy method that
  ``IInt8EntropyCalibrator2`` uses. TensorRT's Q/DQ rules are followed: int8 only, symmetric (every
  zero point 0), per-channel weight scales, Q/DQ only on the inputs of the layers TensorRT runs in int8
  (Conv, ConvTranspose, MatMul, Gemm); biases stay float. ``tensorrt_qdq_problems`` checks a graph
  against these rules.

What runs here: the transformations, the rule check, and ONNX Runtime on the results (parity against
fp32 is measured). Whether TensorRT's parser accepts the result and what the engines' accuracy and
speed are is not verified without TensorRT (see docs/jetson.md).

onnx and onnxruntime are imported inside the functions: the TensorRT backend imports this module, and
only a strongly typed fp16/int8 build needs them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embodied_wm.errors import ConfigError, InvalidDataError

log = logging.getLogger(__name__)

#: Layers whose inputs get Q/DQ nodes (TensorRT runs these in int8; the rest stays in float).
QDQ_OP_TYPES = ("Conv", "ConvTranspose", "MatMul", "Gemm")
#: Layers kept in fp32 inside an fp16 graph.
FP32_OP_TYPES = ("LayerNormalization", "InstanceNormalization", "ReduceMean", "ReduceMax", "Softmax")


def converter_identity(precision: str) -> dict[str, Any]:
    """What produced a reduced-precision graph (part of the engine cache key: another ONNX Runtime
    version may place nodes or compute scales differently)."""
    # lazy: see the module docstring
    import onnxruntime as ort

    if precision == "fp16":
        return {"tool": f"onnxruntime {ort.__version__} float16", "fp32_ops": list(FP32_OP_TYPES)}
    if precision == "int8":
        return {
            "tool": f"onnxruntime {ort.__version__} quantize_static QDQ",
            "calibration": "entropy",
            "ops": list(QDQ_OP_TYPES),
            "symmetric": True,
            "per_channel": True,
        }
    raise ConfigError(f"no reduced-precision ONNX for precision {precision!r}")


def _atomic_save(model: Any, dst: Path) -> None:
    # lazy: see the module docstring
    import onnx

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, dst)


def fp16_onnx(src: Path, dst: Path) -> Path:
    """``src`` (fp32) as a mixed-precision fp16 graph at ``dst`` (see the module docstring)."""
    # lazy: see the module docstring
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = convert_float_to_float16(
        onnx.load(str(src)),
        keep_io_types=True,
        op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP32_OP_TYPES],
    )
    _atomic_save(model, dst)
    return dst


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol over a list of feed dicts."""

    def __init__(self, batches: Sequence[dict[str, np.ndarray]]) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _without_weight_identities(src: Path) -> Any:
    """``src`` with ``Identity(initializer)`` nodes (the exporter's way of sharing a weight between the
    unrolled steps) replaced by the initializer itself, so each weight gets one Q/DQ per reader instead
    of being quantized, dequantized, passed through Identity and quantized again."""
    # lazy: see the module docstring
    import onnx

    model = onnx.load(str(src))
    weights = {t.name for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    alias = {
        n.output[0]: n.input[0]
        for n in model.graph.node
        if n.op_type == "Identity" and n.input[0] in weights and n.output[0] not in outputs
    }
    if not alias:
        return model
    keep = [n for n in model.graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for n in keep:
        for i, name in enumerate(n.input):
            if name in alias:
                n.input[i] = alias[name]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def int8_qdq_onnx(src: Path, dst: Path, batches: Sequence[dict[str, np.ndarray]]) -> Path:
    """``src`` (fp32) with Q/DQ nodes whose scales come from ``batches`` (feeds of ``src``) at ``dst``."""
    # lazy: see the module docstring
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not batches:
        raise InvalidDataError("int8 quantization needs at least one calibration batch")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    quantize_static(  # its calibration copy of the model goes to a temporary directory of its own
        _without_weight_identities(src),
        str(tmp),
        _Batches(batches),  # type: ignore[arg-type]
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QDQ_OP_TYPES),
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
            "DedicatedQDQPair": True,  # other readers of a quantized tensor keep the float one
            "OpTypesToExcludeOutputQuantization": list(QDQ_OP_TYPES),  # Q/DQ on inputs only
        },
    )
    os.replace(tmp, dst)
    problems = tensorrt_qdq_problems(dst)
    if problems:
        raise InvalidDataError(f"{dst.name}: Q/DQ graph breaks TensorRT's rules: {'; '.join(problems[:5])}")
    return dst


def tensorrt_qdq_problems(path: Path) -> list[str]:
    """Where a Q/DQ graph breaks TensorRT's explicit-quantization rules: int8 only, zero points all 0,
    scales positive, finite constants. Empty when it follows them (or has no Q/DQ nodes)."""
    # lazy: see the module docstring
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = {t.name: t for t in model.graph.initializer}
    consts = {
        n.output[0]: a.t
        for n in model.graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    }
    problems = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        scale_name = node.input[1]
        scale_t = init.get(scale_name) or consts.get(scale_name)
        if scale_t is None:
            problems.append(f"{node.name}: scale {scale_name} is not a constant")
        else:
            scale = numpy_helper.to_array(scale_t)
            if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
                problems.append(f"{node.name}: scale not positive and finite")
        if len(node.input) > 2 and node.input[2]:
            zp_t = init.get(node.input[2]) or consts.get(node.input[2])
            if zp_t is None:
                problems.append(f"{node.name}: zero point {node.input[2]} is not a constant")
                continue
            if zp_t.data_type != onnx.TensorProto.INT8:
                problems.append(
                    f"{node.name}: zero point type {onnx.TensorProto.DataType.Name(zp_t.data_type)}, not INT8"
                )
            elif np.any(numpy_helper.to_array(zp_t) != 0):
                problems.append(f"{node.name}: non-zero zero point (TensorRT quantizes symmetrically)")
        elif node.op_type == "QuantizeLinear":
            problems.append(f"{node.name}: no zero point, so the output type is uint8, not int8")
    return problems


def ort_parity(
    reference: Path, candidate: Path, feeds: Sequence[dict[str, np.ndarray]]
) -> dict[str, dict[str, float]]:
    """Per output, the largest and the mean |candidate - reference| over ``feeds``, both graphs run by
    ONNX Runtime on the CPU."""
    # lazy: see the module docstring
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    ref = ort.InferenceSession(str(reference), opts, providers=["CPUExecutionProvider"])
    cand = ort.InferenceSession(str(candidate), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in ref.get_outputs()]
    worst = dict.fromkeys(names, 0.0)
    total = dict.fromkeys(names, 0.0)
    for feed in feeds:
        for name, a, b in zip(names, ref.run(names, feed), cand.run(names, feed)):
            d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
            if d.size:
                worst[name] = max(worst[name], float(d.max()))
                total[name] += float(d.mean())
    n = max(len(feeds), 1)
    return {name: {"max": worst[name], "mean": total[name] / n} for name in names}


def reduced_precision_onnx(
    src: Path, dst: Path, precision: str, batches: Sequence[dict[str, np.ndarray]] | None
) -> Path:
    """The graph a strongly typed TensorRT build of ``precision`` needs (fp32: ``src`` itself).
    An existing ``dst`` is reused: its path is keyed by everything that determines it."""
    if precision == "fp32":
        return src
    if dst.is_file():
        return dst
    if precision == "fp16":
        return fp16_onnx(src, dst)
    if precision == "int8":
        if batches is None:
            raise ConfigError("int8 needs calibration batches")
        return int8_qdq_onnx(src, dst, batches)
    raise ConfigError(f"precision must be fp16, fp32 or int8, got {precision!r}")
