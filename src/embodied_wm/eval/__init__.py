"""embodied_wm.eval"""
