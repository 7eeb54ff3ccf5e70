"""Planning against the world model, no ROS: what to optimise and how to search.

  objectives.py  score_rollout: affordance channels + goal image (modes "last", "region")
  pixel_goal.py  pixel goals (designated pixels -> goal pixels, Visual Foresight) and latent goals, on
                 the scores-only rollout (Backend.score_pixels)
  cem.py         CemSampler: the cross-entropy method over action sequences
  params.py      the planner's settings (planner_node's parameters, eval-planner's options)
"""
