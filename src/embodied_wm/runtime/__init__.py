"""embodied_wm.runtime"""
