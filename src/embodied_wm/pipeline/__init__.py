"""Messages in, Predictions out: the one path every driver (node, replay, training data, calibration) uses.

  core.py     Pipeline: decode (sensing) -> Aligner -> backend, with drop counters (PipelineStats)
"""

from embodied_wm.pipeline.core import KINDS, Pipeline, PipelineStats, kind_for_msgtype

__all__ = ["KINDS", "Pipeline", "PipelineStats", "kind_for_msgtype"]
