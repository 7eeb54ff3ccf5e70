"""embodied_wm.eval: prediction metrics (metrics), matching predictions to the frames that came
(scoring), offline bag replay (replay), sensor perturbations (robustness), the HTML report (report) and
the ``embodied-wm eval`` command (cli). Output schema: docs/eval_schema.md."""
