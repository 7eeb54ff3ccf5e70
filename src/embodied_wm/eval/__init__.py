"""embodied_wm.eval: prediction metrics (metrics; ``score_frames`` is the one per-horizon scorer), matching
predictions to the frames that came (scoring), offline bag replay (replay), sensor perturbations
(robustness), the HTML report (report) and the ``embodied-wm eval`` command (cli). Output schema:
docs/eval_schema.md. ``planning`` (+ ``controllers``, ``planning_cli``): the closed-loop planner test
(``embodied-wm eval-planner``); ``ranking``: the open-loop planning diagnostic (eval-ranking)."""
