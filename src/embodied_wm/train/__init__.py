"""embodied_wm.train"""
