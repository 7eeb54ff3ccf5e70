"""Planning against the world model, no ROS: what to optimise and how to search.

  objectives.py  score_rollout: affordance channels + goal image (modes "last", "region")
  cem.py         CemSampler: the cross-entropy method over action sequences
  params.py      the planner's settings (planner_node's parameters, eval-planner's options)
"""
