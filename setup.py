"""Pip install without ROS: `pip install -e .[sim]` gives the library and the `embodied-wm` CLI."""
from setuptools import setup

setup()
