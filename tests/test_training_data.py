"""Training data pipeline (issue "Train on real video datasets", part 3): windowed decoding, per-ordinal
determinism, every source kind, bad clips skipped and reported, bounded memory over an epoch.

Test clips are encoded here with PyAV. Their frames carry their own index (left half: index // 16, right half:
index % 16, as 16 grey levels), so a test can tell which source frames came back, through lossy codecs and
resizing alike.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import pickle
import tarfile
import time

import numpy as np
import pytest
import torch
from PIL import Image

from pack_import import sub

pytestmark = pytest.mark.training

H, W = 72, 96


def index_frames(count: int, h: int = H, w: int = W) -> list[np.ndarray]:
    frames = []
    for i in range(count):
        frame = np.empty((h, w, 3), np.uint8)
        frame[:, : w // 2] = 16 * (i // 16) + 8
        frame[:, w // 2:] = 16 * (i % 16) + 8
        frames.append(frame)
    return frames


def frame_index(frame: np.ndarray | torch.Tensor) -> int:
    """The index drawn into a frame (after any resize/crop: the halves sit left and right of the centre)."""
    frame = np.asarray(frame)
    h, w = frame.shape[:2]
    left = float(frame[h // 2, w // 8].mean())
    right = float(frame[h // 2, w - 1 - w // 8].mean())
    return 16 * round((left - 8) / 16) + round((right - 8) / 16)


@pytest.fixture(scope="module")
def libs(mc):
    return sub("training.data"), sub("training.video_decode"), sub("prepare")


def write_clip(vd, path, count, fps=8, gop=8, codec="mpeg4", h=H, w=W):
    vd.write_video(str(path), index_frames(count, h, w), fps, codec=codec, gop=gop)


# -- decoding -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_windowed_decode_matches_whole_file(libs, tmp_path, codec):
    data, vd, _ = libs
    path = str(tmp_path / f"ramp_{codec}.mp4")
    write_clip(vd, path, 240, fps=24, gop=12, codec=codec)
    before = vd.decoded_frames()
    with vd.open_clip(path) as reader:
        assert (reader.info.frames, reader.info.fps) == (240, 24.0)
        whole = reader.read_all(size=32)
    whole_count = vd.decoded_frames() - before
    assert whole.shape == (240, 32, 32, 3) and whole_count == 240
    assert [frame_index(f) for f in whole] == list(range(240)), "the test clip must carry its indices"

    cases = [(data.FrameWindow(16, stride=1), 0), (data.FrameWindow(16, stride=1), 100),
             (data.FrameWindow(16, stride=1), 224), (data.FrameWindow(8, stride=3), 37),
             (data.FrameWindow(16, fps=8.0), 150), (data.FrameWindow(12, fps=10.0), 13),
             (data.FrameWindow(20, fps=30.0), 200)]
    for window, start in cases:
        assert 0 <= start <= window.last_start(240, 24.0)
        positions = window.positions(start, 24.0)
        expected = [vd.nearest_index(p) for p in positions]
        before = vd.decoded_frames()
        with vd.open_clip(path) as reader:
            got = reader.read(positions, 32)
        decoded = vd.decoded_frames() - before
        assert got.shape == (window.frames, 32, 32, 3) and got.dtype == np.uint8
        assert [frame_index(f) for f in got] == expected, (window, start)
        assert np.array_equal(got, whole[expected]), (window, start)
        # from the keyframe before the window to its last frame, plus a few in the decoder's pipeline
        assert decoded <= expected[-1] - expected[0] + 1 + 12 + 4, (window, start, decoded)
        if window.stride == 1 and not window.fps:  # 16 consecutive frames of 240
            assert decoded * 5 <= whole_count, (window, start, decoded)


def test_truncated_stream_and_resize(libs, tmp_path):
    _, vd, _ = libs
    import av

    # moov atom first (faststart): the header promises 80 frames, the data stops halfway
    path = tmp_path / "faststart.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.codec_context.gop_size = 8
        for frame in index_frames(80):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    blob = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(blob[: len(blob) // 2])
    with vd.open_clip(str(cut)) as reader:
        assert reader.info.frames == 80
        early = reader.read([0, 1, 2], 24)
    assert [frame_index(f) for f in early] == [0, 1, 2] and early.shape == (3, 24, 24, 3)
    with vd.open_clip(str(cut)) as reader, pytest.raises(vd.BadClip, match="truncated"):
        reader.read(list(range(70, 80)), 24)
    assert vd.output_size(96, 72, 32) == (43, 32) and vd.output_size(50, 100, 20) == (20, 40)


# -- datasets -----------------------------------------------------------------------------------------------------

def _folder_dataset(vd, root, clips=6, frames=48):
    """Video files with .txt captions, one captioned by captions.json, a frame folder and a GIF."""
    root.mkdir(parents=True, exist_ok=True)
    captions = {}
    for k in range(clips):
        write_clip(vd, root / f"v{k}.mp4", frames, fps=8, gop=8, h=64, w=64)
        captions[f"v{k}.mp4"] = f"video {k}"
        if k:
            (root / f"v{k}.txt").write_text(f"video {k}\n")
    (root / "captions.json").write_text(json.dumps({"v0.mp4": "video 0", "frames": "ignored: caption.txt wins"}))
    (root / "frames").mkdir()
    for i, frame in enumerate(index_frames(20, 40, 40)):
        Image.fromarray(frame).save(root / "frames" / f"{i:03d}.png")
    (root / "frames" / "caption.txt").write_text("a frame folder")
    captions["frames"] = "a frame folder"
    gif = [Image.fromarray(f) for f in index_frames(24, 40, 40)]
    gif[0].save(root / "anim.gif", save_all=True, append_images=gif[1:], duration=125, loop=0)
    (root / "anim.txt").write_text("a gif")
    captions["anim.gif"] = "a gif"
    return captions


@pytest.fixture(scope="module")
def folder(libs, tmp_path_factory):
    _, vd, _ = libs
    root = tmp_path_factory.mktemp("folder") / "clips"
    return root, _folder_dataset(vd, root)


def _key(sample):
    return (sample["name"], sample["caption"], sample["key_index"], [frame_index(f) for f in sample["frames"]])


def test_folder_source_and_determinism(libs, folder):
    data, _, _ = libs
    root, captions = folder
    kwargs = dict(frames=8, size=32, keyframe="mixed", text_dropout=0.3, seed=7)
    first, second = data.ClipDataset(str(root), **kwargs), data.ClipDataset(str(root), **kwargs)
    assert len(first) == len(captions) == 8
    samples = [first[n] for n in range(24)]
    assert [_key(s) for s in samples] == [_key(second[n]) for n in range(24)]
    again = pickle.loads(pickle.dumps(first))
    assert _key(again[5]) == _key(samples[5])
    for s in samples:
        assert s["frames"].dtype == torch.uint8 and s["frames"].shape == (8, 32, 32, 3)
        assert s["skipped"] == []
        name = os.path.basename(s["name"])
        assert s["caption"] in ("", captions[name])
        indices = [frame_index(f) for f in s["frames"]]
        assert indices == list(range(indices[0], indices[0] + 8)), s["name"]
    # each epoch visits every clip once; different ordinals make different choices
    for epoch in range(3):
        names = {os.path.basename(s["name"]) for s in samples[8 * epoch: 8 * epoch + 8]}
        assert names == set(captions)
    assert len({(s["name"], frame_index(s["frames"][0])) for s in samples}) > 12
    assert len({s["key_index"] for s in samples}) > 2
    assert 0 < sum(s["caption"] == "" for s in samples) < 24
    other_seed = data.ClipDataset(str(root), **{**kwargs, "seed": 8})
    assert [_key(other_seed[n]) for n in range(8)] != [_key(s) for s in samples[:8]]

    first_window = data.ClipDataset(str(root), frames=8, size=32, window="first")
    assert all(frame_index(first_window[n]["frames"][0]) == 0 for n in range(8))


def test_dataloader_workers_give_the_same_samples(libs, folder):
    data, _, _ = libs
    root, _ = folder
    dataset = data.ClipDataset(str(root), frames=8, size=32, keyframe="random", text_dropout=0.2, seed=3)
    ordinals = [13, 2, 40, 7, 8, 9, 30, 31, 0]
    batches = {}
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(dataset, batch_size=3, sampler=ordinals, num_workers=workers,
                                             collate_fn=data.collate, persistent_workers=workers > 0)
        got = list(loader)
        assert got[0]["frames"].shape == (3, 8, 32, 32, 3) and got[0]["frames"].dtype == torch.uint8
        batches[workers] = got
    for a, b in zip(batches[0], batches[2]):
        assert torch.equal(a["frames"], b["frames"])
        for key in ("caption", "key_index", "ordinal", "name", "skipped"):
            assert a[key] == b[key]
    assert [o for b in batches[0] for o in b["ordinal"]] == ordinals
    direct = dataset[40]
    assert torch.equal(direct["frames"], batches[0][0]["frames"][2]) and direct["name"] == batches[0][0]["name"][2]


def test_fps_mode_and_gif_and_frame_folder(libs, folder):
    data, _, _ = libs
    root, _ = folder
    # 8 fps sources sampled at 4 fps: every second frame; the frame folder has no rate and uses stride
    dataset = data.ClipDataset(str(root), frames=6, size=24, fps=4.0, stride=3, seed=1)
    seen = set()
    for n in range(16):
        sample = dataset[n]
        indices = [frame_index(f) for f in sample["frames"]]
        step = 3 if sample["name"].endswith("frames") else 2
        assert indices == [indices[0] + step * i for i in range(6)], (sample["name"], indices)
        seen.add(os.path.basename(sample["name"]))
    assert {"frames", "anim.gif"} <= seen


def _csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_csv_manifest_and_webvid_columns(libs, tmp_path):
    data, vd, _ = libs
    videos = tmp_path / "videos"
    (videos / "page_a").mkdir(parents=True)
    write_clip(vd, videos / "page_a" / "111.mp4", 24)
    write_clip(vd, videos / "222.mp4", 24)  # flat layout: <root>/<videoid>.mp4
    write_clip(vd, videos / "333.mp4", 24)

    manifest = tmp_path / "list.csv"
    _csv(manifest, ["path", "caption", "fps", "frames"],
         [["videos/page_a/111.mp4", "first, with a comma", "8", "24"], ["videos/222.mp4", "second", "", ""],
          [str(videos / "333.mp4"), "third", "", ""]])
    dataset = data.ClipDataset(str(manifest), frames=8, size=32)
    got = {os.path.basename(dataset[n]["name"]): dataset[n]["caption"] for n in range(3)}
    assert got == {"111.mp4": "first, with a comma", "222.mp4": "second", "333.mp4": "third"}
    rooted = tmp_path / "rooted.csv"
    _csv(rooted, ["path", "caption"], [["page_a/111.mp4", "first"], ["222.mp4", "second"]])
    assert sorted(data.ClipDataset(str(rooted), frames=8, size=32, video_root=str(videos))[n]["caption"]
                  for n in range(2)) == ["first", "second"]

    webvid = tmp_path / "results_2M_val.csv"
    _csv(webvid, ["videoid", "contentUrl", "duration", "page_dir", "name"],
         [["111", "https://example.invalid/111.mp4", "PT00H00M03S", "page_a", "a dog runs"],
          ["222", "https://example.invalid/222.mp4", "PT00H00M03S", "page_b", "a cat sleeps"]])
    dataset = data.ClipDataset(str(webvid), frames=8, size=32, video_root=str(videos))
    samples = [dataset[n] for n in range(2)]
    assert {s["caption"] for s in samples} == {"a dog runs", "a cat sleeps"} and not any(s["skipped"] for s in samples)

    with pytest.raises(data.DataError, match="nothing.csv"):
        data.ClipDataset(str(tmp_path / "nothing.csv"), frames=8, size=32)
    bad_header = tmp_path / "wrong.csv"
    _csv(bad_header, ["file", "text"], [["a.mp4", "x"]])
    with pytest.raises(data.DataError, match="wrong.csv.*path"):
        data.ClipDataset(str(bad_header), frames=8, size=32)


def test_parquet_manifest(libs, tmp_path):
    data, vd, _ = libs
    write_clip(vd, tmp_path / "a.mp4", 16)
    path = tmp_path / "list.parquet"
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        path.write_bytes(b"PAR1")
        with pytest.raises(data.DataError, match="list.parquet.*pyarrow"):
            data.ClipDataset(str(path), frames=8, size=32)
        return
    pq.write_table(pyarrow.table({"path": ["a.mp4"], "caption": ["parquet clip"]}), str(path))
    assert data.ClipDataset(str(path), frames=8, size=32)[0]["caption"] == "parquet clip"


def _add_member(tar, name, payload: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _shards(vd, folder, count=2, per_shard=3):
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / "scratch.mp4"
    captions = {}
    for s in range(count):
        with tarfile.open(folder / f"shard-{s:03d}.tar", "w") as tar:
            for k in range(per_shard):
                key = f"{s:03d}{k:04d}"
                write_clip(vd, scratch, 20 + k, h=64, w=64)
                _add_member(tar, f"{key}.mp4", scratch.read_bytes())
                caption = f"shard {s} sample {k}"
                if k % 2:
                    _add_member(tar, f"{key}.json", json.dumps({"text": caption, "width": 64}).encode())
                else:
                    _add_member(tar, f"{key}.txt", caption.encode())
                captions[key] = caption
            _add_member(tar, "orphan.txt", b"a caption without a video")
    scratch.unlink()
    return captions


def test_tar_shards(libs, tmp_path):
    data, vd, _ = libs
    folder = tmp_path / "shards"
    captions = _shards(vd, folder)
    for source, expected in ((str(folder), 6), (str(folder / "shard-{000..001}.tar"), 6),
                             (str(folder / "shard-*.tar"), 6), (str(folder / "shard-001.tar"), 3)):
        dataset = data.ClipDataset(source, frames=8, size=32, seed=2)
        assert len(dataset) == expected, source
        for n in range(expected):
            sample = dataset[n]
            shard, member = sample["name"].rsplit(":", 1)
            assert shard.endswith(".tar") and member.endswith(".mp4")
            assert sample["caption"] == captions[member[:-4]] and not sample["skipped"]
            indices = [frame_index(f) for f in sample["frames"]]
            assert indices == list(range(indices[0], indices[0] + 8))
    with pytest.raises(data.DataError, match="nowhere-"):
        data.ClipDataset(str(folder / "nowhere-{0..3}.tar"), frames=8, size=32)


def test_prepare_manifest_round_trip(libs, folder, tmp_path):
    data, vd, prepare = libs
    root, captions = folder
    out = tmp_path / "out" / "manifest.csv"
    assert prepare.main([str(root), "--out", str(out), "--workers", "2"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {os.path.basename(r["path"]): r["caption"] for r in rows} == captions
    mp4 = next(r for r in rows if r["path"].endswith("v1.mp4"))
    assert (float(mp4["fps"]), int(mp4["frames"])) == (8.0, 48)
    dataset = data.ClipDataset(str(out), frames=8, size=32)
    assert {os.path.basename(dataset[n]["name"]): dataset[n]["caption"] for n in range(8)} == captions
    report = json.loads((tmp_path / "out" / "manifest.report.json").read_text())
    assert report["usable"] == 8 and report["counts"] == {"unreadable": 0, "no_caption": 0, "too_short": 0}

    shards = _shards(vd, tmp_path / "shards", count=1)
    out = tmp_path / "shards.csv"
    assert prepare.main([str(tmp_path / "shards" / "shard-000.tar"), "--out", str(out)]) == 0
    dataset = data.ClipDataset(str(out), frames=8, size=32)
    assert len(dataset) == 3
    assert {dataset[n]["name"].rsplit(":", 1)[1][:-4]: dataset[n]["caption"] for n in range(3)} == shards

    with pytest.raises(SystemExit) as help_exit:
        prepare.main(["--help"])
    assert help_exit.value.code == 0


# -- bad clips ----------------------------------------------------------------------------------------------------

BAD = {"zero.mp4": "0 bytes", "truncated.mp4": "Error", "notvideo.mp4": "Error", "short.mp4": "too short",
       "nocaption.mp4": "no caption"}


def _bad_clips(vd, root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "zero.mp4").write_bytes(b"")
    write_clip(vd, root / "full.mp4", 40)
    blob = (root / "full.mp4").read_bytes()
    (root / "full.mp4").unlink()
    (root / "truncated.mp4").write_bytes(blob[: len(blob) // 2])
    (root / "notvideo.mp4").write_text("these are notes, not a video\n" * 20)
    write_clip(vd, root / "short.mp4", 4)
    write_clip(vd, root / "nocaption.mp4", 40)
    for name in ("zero", "truncated", "notvideo", "short"):
        (root / f"{name}.txt").write_text(f"caption of {name}")


def test_bad_clips_are_skipped_logged_and_reported(libs, tmp_path, caplog):
    data, vd, prepare = libs
    root = tmp_path / "mixed"
    _bad_clips(vd, root)
    for k in range(3):
        write_clip(vd, root / f"good{k}.mp4", 40)
        (root / f"good{k}.txt").write_text(f"good {k}")
    dataset = data.ClipDataset(str(root), frames=8, size=32, seed=4)
    assert len(dataset) == 8

    with caplog.at_level(logging.WARNING, logger="microcinema.data"):
        direct = [dataset[n] for n in range(8)]
    for name, reason in BAD.items():
        assert any(name in r.getMessage() and reason in r.getMessage() for r in caplog.records), name
    assert all(os.path.basename(s["name"]).startswith("good") for s in direct)
    skipped = [entry for s in direct for entry in s["skipped"]]
    assert len(skipped) >= len(BAD)
    for name, reason in BAD.items():
        assert any(os.path.basename(e.split(":")[0]) == name and reason in e for e in skipped), (name, skipped)

    # two workers over two epochs that contain every bad clip: nothing raises, the same samples come back
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, sampler=range(16), num_workers=2,
                                         collate_fn=data.collate)
    batches = list(loader)
    assert sum(len(b["ordinal"]) for b in batches) == 16
    assert [e for b in batches[:2] for s in b["skipped"] for e in s] == skipped

    # precompute's view: every clip once, in index order, the bad ones with their reason instead of a substitute
    listed = [data.IndexOrder(dataset)[i] for i in range(len(dataset))]
    assert sum(s["frames"] is None for s in listed) == len(BAD)
    for s in listed:
        name = os.path.basename(s["name"])
        assert (s["frames"] is None) == (name in BAD) and (name not in BAD or BAD[name] in s["reason"])

    # a caption dropped on purpose is not a missing caption
    dropped = data.ClipDataset(str(root), frames=8, size=32, seed=4, text_dropout=1.0)
    names = [os.path.basename(dropped[n]["name"]) for n in range(8)]
    assert "nocaption.mp4" in names and all(dropped[n]["caption"] == "" for n in range(8))

    out = tmp_path / "mixed.csv"
    assert prepare.main([str(root), "--out", str(out), "--min-frames", "8"]) == 0
    report = json.loads((tmp_path / "mixed.report.json").read_text())
    assert report["usable"] == 3
    assert report["counts"] == {"unreadable": 3, "no_caption": 1, "too_short": 1}
    reported = {os.path.basename(item["name"]): item["reason"] for kind in ("unreadable", "no_caption", "too_short")
                for item in report[kind]}
    assert set(reported) == set(BAD)
    assert "0 bytes" in reported["zero.mp4"] and "too short" in reported["short.mp4"]


def test_all_bad_source_raises_data_error_naming_it(libs, tmp_path, caplog):
    data, vd, prepare = libs
    root = tmp_path / "all_bad"
    _bad_clips(vd, root)
    dataset = data.ClipDataset(str(root), frames=8, size=32)
    with pytest.raises(data.DataError) as error:
        dataset[0]
    message = str(error.value)
    assert str(root) in message and "no usable clip among 5" in message
    few = data.ClipDataset(str(root), frames=8, size=32, max_skips=2)
    with pytest.raises(data.DataError, match="among 2 tried"):
        few[3]

    with caplog.at_level(logging.ERROR, logger="microcinema.prepare"):
        assert prepare.main([str(root), "--out", str(tmp_path / "none.csv"), "--min-frames", "8"]) == 2
    assert any(str(root) in r.getMessage() and "no usable clip" in r.getMessage() for r in caplog.records)
    assert prepare.main([str(tmp_path / "missing"), "--out", str(tmp_path / "x.csv")]) == 2
    with pytest.raises(data.DataError, match="missing"):
        data.ClipDataset(str(tmp_path / "missing"), frames=8, size=32)


# -- memory -------------------------------------------------------------------------------------------------------

def _total_rss() -> int:
    """Resident bytes of this process and its children (the DataLoader workers)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        me = psutil.Process()
        return sum(p.memory_info().rss for p in [me, *me.children(recursive=True)])
    pids = [os.getpid()]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                        pids.append(int(entry))
            except OSError:
                continue
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
    return total


def test_memory_stays_flat_over_an_epoch(libs, tmp_path):
    data, vd, _ = libs
    root = tmp_path / "many"
    root.mkdir()
    t0 = time.perf_counter()
    frames = index_frames(80, 64, 64)  # 10 s at 8 fps
    for k in range(200):
        vd.write_video(str(root / f"c{k:03d}.mp4"), frames[k % 7:] + frames[:k % 7], 8, codec="mpeg4", gop=16)
        (root / f"c{k:03d}.txt").write_text(f"clip {k}")
    logging.getLogger("microcinema.tests").info("200 clips written in %.1f s", time.perf_counter() - t0)
    dataset = data.ClipDataset(str(root), frames=16, size=64, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, sampler=range(200), num_workers=2,
                                         collate_fn=data.collate, persistent_workers=True, prefetch_factor=2)
    seen = 0
    first10 = None
    for b, batch in enumerate(loader):
        seen += len(batch["ordinal"])
        assert not any(batch["skipped"])
        if b == 9:
            first10 = _total_rss()
    after = _total_rss()
    assert seen == 200
    growth = f"RSS of the process and its workers grew from {first10 / 2**20:.0f} to {after / 2**20:.0f} MiB"
    assert after <= first10 * 1.10, growth
    # the old loader's cache of these clips alone would be 200 x 80 x 64 x 64 x 3 bytes = 188 MiB
    assert after - first10 < 64 * 2**20, growth
