"""PyTorch world model: per-modality encoders, fusion, action-conditioned dynamics, frame decoder,
affordance head; configs (JSON data) and checkpoint I/O (safetensors + JSON config).

Import the submodules directly (``embodied_wm.model.world_model`` etc.); this package import stays light
so numpy-only users (preprocess, config) do not pay for torch.
"""
