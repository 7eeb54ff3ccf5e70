"""Where the package's own files (msg/, config/, models/) are: the installed share directory, then the
source checkout. One place for the lookup that the nodes, the bag reader and the benchmarks all need."""

from __future__ import annotations

from pathlib import Path

#: <repo> when running from the source tree (this file is <repo>/src/embodied_wm/resources.py).
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def package_roots() -> list[Path]:
    """share/embodied_wm (when the package is installed and the ament index is available), then <repo>."""
    roots: list[Path] = []
    try:
        # lazy: optional: absent here is handled below
        from ament_index_python.packages import get_package_share_directory

        roots.append(Path(get_package_share_directory("embodied_wm")))
    except Exception:  # not installed / no ament index: the source tree only
        pass
    roots.append(SOURCE_ROOT)
    return roots


def package_file_candidates(*parts: str) -> list[Path]:
    """``parts`` joined under each package root, in lookup order (they may not exist)."""
    return [root.joinpath(*parts) for root in package_roots()]
