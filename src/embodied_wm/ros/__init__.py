"""embodied_wm.ros"""
