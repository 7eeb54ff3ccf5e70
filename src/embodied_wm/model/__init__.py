"""embodied_wm.model"""
