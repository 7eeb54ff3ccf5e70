"""embodied_wm.eval: prediction metrics (metrics), matching predictions to the frames that came
(scoring), offline bag replay (replay), sensor perturbations (robustness), the HTML report (report) and
the ``embodied-wm eval`` command (cli). Output schema: docs/eval_schema.md. ``planning``: the closed-loop
planner test (``embodied-wm eval-planner``: push an object toward a goal in the simulator)."""
