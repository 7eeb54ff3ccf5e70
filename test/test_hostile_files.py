"""Bad model, config and bag files (issue 16): every CLI case ends in one line and exit 1, or succeeds,
never a traceback; the loaders reject by structure before anything is built from the file.

The cases are the ones ``embodied-wm bench --hostile`` runs as subprocesses (embodied_wm.tools.hostile.file
cases); here they run in-process through ``embodied_wm.cli.main`` (same code, one interpreter start).
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from conftest import requires_ros

pytestmark = requires_ros


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from embodied_wm.tools.hostile import file_cases

    return {c.name: c for c in file_cases(tmp_path_factory.mktemp("hostile_files"))}


def _case_names() -> list[str]:
    # The names are fixed by embodied_wm.tools.hostile.file_cases; listing them here keeps collection cheap.
    models = [
        "safetensors_header_list", "safetensors_entry_not_dict", "safetensors_bad_offsets",
        "safetensors_negative_shape", "config_enc_channels_negative", "config_latent_dim_60000",
        "config_horizon_string", "config_is_list", "config_not_json", "config_section_not_dict",
        "directory_without_model",
    ]  # fmt: skip
    bags = [
        "bag_version_abc", "bag_version_list", "bag_paths_not_list", "bag_storage_not_string",
        "bag_metadata_is_list", "bag_metadata_not_yaml", "bag_metadata_not_utf8",
    ]  # fmt: skip
    exports = ["export_manifest_list", "export_graph_file_not_string"]
    return (
        [f"bench_pytorch/{m}" for m in models]
        + [f"eval/{m}" for m in models + bags]
        + [f"bench_onnxruntime/{e}" for e in exports]
    )


def test_case_list_matches(cases: dict[str, Any]) -> None:
    assert sorted(cases) == sorted(_case_names())


def _in_process(argv: list[str]) -> tuple[int, str]:
    """``embodied-wm ARGV`` through cli.main in this interpreter: (exit code, stderr). An exception that
    escapes main is a traceback the user would have seen: it fails the test by propagating."""
    from embodied_wm.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc = main(argv)
    except SystemExit as exc:
        rc = int(exc.code or 0)
    return rc, err.getvalue()


@pytest.mark.parametrize("name", _case_names())
def test_cli_file_case_is_one_line_or_success(cases: dict[str, Any], name: str) -> None:
    from embodied_wm.tools.hostile import run_file_case

    r = run_file_case(cases[name], runner=_in_process)
    assert not r["traceback"], r
    assert r["rc"] in (0, 1), r
    if name.startswith(("bench_", "eval/config", "eval/safetensors", "eval/directory")):
        # A bad model must fail, with exactly one line naming the problem.
        assert r["rc"] == 1 and r["error_lines"] == 1, r


def test_config_bounds_checked_before_any_tensor() -> None:
    from embodied_wm.errors import ConfigError
    from embodied_wm.model.config import INT_BOUNDS, ModelConfig, load_config

    for name in ("tiny", "base"):
        load_config(name)  # the shipped configs are inside the bounds
    for key, (lo, hi) in INT_BOUNDS.items():
        for bad in (lo - 1, hi + 1, True, "8", 8.0):
            with pytest.raises(ConfigError, match=key):
                ModelConfig.from_dict({key: bad})
    for bad_cfg in ({"enc_channels": [-16, 32, 64]}, {"dt_s": float("nan")}, {"proprio_std": [0.0] * 6},
                    {"affordance_channels": []}, {"tactile_shape": "ab"}, {"nope": 1}):  # fmt: skip
        with pytest.raises(ConfigError):
            ModelConfig.from_dict(bad_cfg)


def _safetensors(path: Path, header: Any, payload: bytes = b"") -> Path:
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + payload)
    return path


def test_safetensors_header_validated_by_structure(tmp_path: Path) -> None:
    from embodied_wm.model.checkpoint import CheckpointError, _check_weights_file

    ok = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": {"format": "pt"}}
    _check_weights_file(_safetensors(tmp_path / "ok.safetensors", ok, bytes(8)))
    bad = {
        "list": [1, 2],
        "entry_list": {"w": [1, 2]},
        "no_dtype": {"w": {"shape": [2], "data_offsets": [0, 8]}},
        "shape_negative": {"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
        "offsets_strings": {"w": {"dtype": "F32", "shape": [2], "data_offsets": ["0", "8"]}},
        "offsets_reversed": {"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}},
        "metadata_not_strings": {"__metadata__": {"a": 1}},
        "truncated_data": {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 800]}},
    }
    for name, header in bad.items():
        with pytest.raises(CheckpointError):
            _check_weights_file(_safetensors(tmp_path / f"{name}.safetensors", header, bytes(8)))
    huge = tmp_path / "huge_header_len.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    with pytest.raises(CheckpointError, match="header says"):
        _check_weights_file(huge)


def test_bag_metadata_parsed_defensively(cases: dict[str, Any]) -> None:
    from embodied_wm.io.bag import bag_info

    bag = Path(cases["eval/bag_version_abc"].argv[1])
    info = bag_info(bag)
    assert info.version is None and info.topics
    assert bag_info(Path(cases["eval/bag_paths_not_list"].argv[1])).topics == info.topics
