"""embodied_wm: a multimodal world model for robots (ROS 2).

Camera, audio and touch in; predicted future frames and affordance maps out.
"""

__version__ = "0.1.0"
