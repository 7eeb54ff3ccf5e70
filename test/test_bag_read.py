"""data/bag.py on every bag flavour the evaluator promises to read: MCAP and sqlite3 written by rosbags,
an old (format version 2) sqlite3 bag, compressed images, a truncated MCAP file, a recorder that died
before writing metadata.yaml, and camera-topic selection."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from embodied_wm.eval.synthetic import CAMERA_TOPIC, COMPRESSED_TOPIC, SceneConfig, write_bag
from embodied_wm.io.bag import (
    BagError,
    BagReadReport,
    NoCameraTopicError,
    bag_info,
    bag_paths,
    choose_camera_topic,
    find_topics,
    iter_bag_messages,
)

N = 12
TOPICS = 6  # camera, audio, tactile, joints, action, ground-truth affordance


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bags")
    cfg = SceneConfig(frames=N, res=32)
    out = {
        "mcap": write_bag(d / "mcap", cfg, storage="mcap"),
        "sqlite3": write_bag(
            d / "sqlite3", SceneConfig(frames=N, res=32, image_transport="both"), storage="sqlite3", version=8
        ),
        "old": write_bag(d / "old", cfg, storage="sqlite3", version=2),
        "zstd_file": write_bag(d / "zstd_file", cfg, storage="sqlite3", version=8, compression="file"),
        "zstd_message": write_bag(d / "zstd_message", cfg, storage="mcap", compression="message"),
    }
    # Truncated MCAP (recorder killed): metadata.yaml present, the file cut mid-way.
    trunc = d / "truncated"
    trunc.mkdir()
    src = next(out["mcap"].glob("*.mcap"))
    data = src.read_bytes()
    (trunc / src.name).write_bytes(data[: len(data) // 2])
    shutil.copy(out["mcap"] / "metadata.yaml", trunc / "metadata.yaml")
    # No metadata.yaml at all (ros2 bag record writes it last).
    nometa = d / "nometa"
    nometa.mkdir()
    shutil.copy(src, nometa / "rec_0.mcap")
    out["truncated"] = trunc
    out["nometa"] = nometa
    return out


@pytest.mark.parametrize("kind", ["mcap", "sqlite3", "old", "nometa", "zstd_file", "zstd_message"])
def test_reads_every_message(bags: dict[str, Path], kind: str) -> None:
    report = BagReadReport()
    msgs = list(iter_bag_messages(bags[kind], report=report))
    expect = N * (TOPICS + (1 if kind == "sqlite3" else 0))
    assert len(msgs) == report.messages == expect
    assert report.stopped_at is None and report.undecodable == 0
    stamps = [m.stamp_ns for m in msgs]
    assert stamps == sorted(stamps)
    info = bag_info(bags[kind])
    assert info.damaged is None
    assert sum(info.counts.values()) == expect


def test_old_version_and_storage_reported(bags: dict[str, Path]) -> None:
    assert bag_info(bags["old"]).version == 2
    assert bag_info(bags["old"]).storage == "sqlite3"
    assert bag_info(bags["mcap"]).storage == "mcap"
    img = next(iter_bag_messages(bags["old"], topics=[CAMERA_TOPIC]))
    assert img.msg.encoding == "rgb8" and img.msg.height == 32


def test_truncated_mcap_reads_up_to_the_damage(bags: dict[str, Path]) -> None:
    info = bag_info(bags["truncated"])
    assert info.damaged
    assert 0 < info.counts[CAMERA_TOPIC] < N
    report = BagReadReport()
    msgs = list(iter_bag_messages(bags["truncated"], report=report))
    assert 0 < len(msgs) < N * TOPICS
    assert report.stopped_at and "after" in report.stopped_at


def test_topic_filter_and_find_topics(bags: dict[str, Path]) -> None:
    topics = find_topics(bags["mcap"])
    assert topics[CAMERA_TOPIC] == "sensor_msgs/msg/Image"
    assert {m.topic for m in iter_bag_messages(bags["mcap"], topics=["/audio"])} == {"/audio"}


def test_camera_choice(bags: dict[str, Path]) -> None:
    # Raw and compressed have as many messages: the shorter name (raw) wins; asked-for topics win.
    info = bag_info(bags["sqlite3"])
    assert choose_camera_topic(info) == CAMERA_TOPIC
    assert choose_camera_topic(info, ["/nope", COMPRESSED_TOPIC]) == COMPRESSED_TOPIC
    with pytest.raises(NoCameraTopicError, match="/audio"):
        choose_camera_topic(info, ["/nope"])
    with pytest.raises(NoCameraTopicError, match="not an image"):
        choose_camera_topic(info, ["/audio"])


def test_no_camera_lists_topics(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "nocam", SceneConfig(frames=3, res=16, camera=False))
    with pytest.raises(NoCameraTopicError) as exc:
        choose_camera_topic(bag_info(bag))
    msg = str(exc.value)
    assert "\n" not in msg and "/audio" in msg and "/ground_truth/affordance" in msg


def test_bag_paths_expands_and_rejects(bags: dict[str, Path], tmp_path: Path) -> None:
    parent = bags["mcap"].parent
    found = bag_paths([parent])
    assert bags["mcap"] in found and bags["old"] in found
    with pytest.raises(BagError, match="no such file"):
        bag_paths([tmp_path / "missing"])
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(BagError, match="not a rosbag2"):
        bag_paths([tmp_path / "x.txt"])
    garbage = tmp_path / "garbage.db3"
    garbage.write_bytes(b"not sqlite")
    with pytest.raises(BagError, match="cannot open"):
        bag_info(garbage)


@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_recorder_style_mcap_with_compressed_chunks(tmp_path: Path, compression: str) -> None:
    """A bare .mcap with compressed chunks (as rosbag2_storage_mcap writes), intact and cut mid-chunk:
    the cut chunk's complete messages are still read."""
    from embodied_wm.eval.synthetic import write_mcap_file

    full = write_mcap_file(
        tmp_path / "full.mcap", SceneConfig(frames=20, res=32), compression=compression, chunk_size=32 * 1024
    )
    assert sum(1 for _ in iter_bag_messages(full)) == 20 * TOPICS
    data = full.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    report = BagReadReport()
    msgs = list(iter_bag_messages(cut, report=report))
    assert report.stopped_at and "cut.mcap" in report.stopped_at
    # More than the complete chunks alone would give: at least half the messages survive a 60 % cut.
    assert 20 * TOPICS // 2 <= len(msgs) < 20 * TOPICS
    assert [m.stamp_ns for m in msgs] == sorted(m.stamp_ns for m in msgs)
