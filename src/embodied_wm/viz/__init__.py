"""How people see the model's output: one overlay renderer and one contact-sheet layout (numpy, OpenCV
and sensing.resize only, so every layer above sensing can use it)."""

from embodied_wm.viz.overlay import (
    abs_error,
    colorize,
    colour_bar,
    display_scale,
    draw_contours,
    error_bar,
    error_map,
    lut,
    probability_bar,
    probability_map,
    probability_overlay,
    upscale,
)
from embodied_wm.viz.sheet import comparison_sheet

__all__ = [
    "abs_error",
    "colorize",
    "colour_bar",
    "comparison_sheet",
    "display_scale",
    "draw_contours",
    "error_bar",
    "error_map",
    "lut",
    "probability_bar",
    "probability_map",
    "probability_overlay",
    "upscale",
]
