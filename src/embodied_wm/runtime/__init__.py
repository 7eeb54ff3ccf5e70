"""Backends that turn Observations into Predictions, behind one interface (``base.Backend``).

  base.py                 Backend ABC and errors (BackendError, BackendUnavailableError, ModelFileError...)
  registry.py             backend names and the one device parser (device_problem)
  select.py               create_backend(name, model_dir, device, **opts); "auto" picks the fastest that runs;
                          model lookup (default_model_dir), the node's fallback (create_backend_with_fallback)
  machine.py              what a measurement ran on (CPU model, cores, platform)
  baselines.py            CopyLastBackend, LinearBackend (optical-flow extrapolation)
  torch_backend.py        PyTorch (CPU/CUDA, fp16 autocast, optional torch.compile)
  onnxruntime_backend.py  ONNX Runtime (TensorRT/CUDA/CPU execution providers)
  tensorrt_backend.py     TensorRT 10/11, TensorRT-RTX engines on torch CUDA tensors (unverified here)
  onnx_precision.py       fp16 and Q/DQ int8 graphs for strongly typed TensorRT (>= 11, RTX)
  onnx_export.py          export_onnx / ensure_onnx: encoder.onnx + rollout.onnx + export.json, parity-checked
  engine_cache.py         engine_cache_key and the on-disk engine cache
  bench.py, cli.py        `embodied-wm bench | export | build-engine`

Nothing heavy is imported here: torch, onnxruntime and tensorrt load only with the backend that needs them.
"""
