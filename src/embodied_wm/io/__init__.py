"""The bottom layer: rosbag2 reading (via `rosbags`), the typestore, and message builders."""
