"""embodied_wm.sensing"""
