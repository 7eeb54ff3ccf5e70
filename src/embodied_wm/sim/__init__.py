"""embodied_wm.sim"""
