"""`sqair-track` and the windowed tracking it is built on (`SQAIR.track_window`, the `track_window` endpoint).

The end-to-end tests write a video with OpenCV: two MNIST digits moving slowly over a static textured background, so
every object's box is known. The shipped `mnist` model tracks them through background subtraction, tiling and
windows of 4 frames; the MOT file is checked against the known boxes, and the SavedModel path against the
in-process one.
"""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import digits
from data_pipelines import video
from serving import export
from sqair_tf import models
from tools import track
from trainers import pretrained

BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
SIDE, NUM_FRAMES = 100, 80  # 100×100 video = 2×2 tiles of the MNIST model's 50×50 input, no downscaling.
TRACK_ARGS = ["--model", "mnist", "--scale-width", str(SIDE), "--warmup-frames", "10", "--every", "2",
              "--window", "4", "--k", "2", "--no-invert", "--no-progress"]  # Digits are bright already.


def _digit_objects(t):
    """(template index, top, left) of the digits in frame t: each enters after the background model's warm-up and
    moves within one tile (0.25 px/frame right in the top-left tile, 0.2 px/frame down in the bottom-right one)."""
    objects = []
    if 15 <= t < 75:
        objects.append((0, 8, 4 + int(0.25 * (t - 15))))
    if 20 <= t < 80:
        objects.append((5, 48 + int(0.2 * (t - 20)), 60))
    return objects


@pytest.fixture(scope="module")
def digit_video(tmp_path_factory):
    """The video file and the known boxes {frame: [(digit, (x, y, w, h)), ...]} (0-based pixels) of its digits'
    pixels (digit: the template index of `_digit_objects`)."""
    templates = digits.load_digits("embedded", "test").templates
    path = str(tmp_path_factory.mktemp("video") / "digits.avi")
    background = np.random.default_rng(0).integers(20, 40, (SIDE, SIDE)).astype(np.uint8)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FFV1"), 10, (SIDE, SIDE), isColor=False)
    boxes = {}
    for t in range(NUM_FRAMES):
        frame = background.copy()
        boxes[t] = []
        for index, y, x in _digit_objects(t):
            digit = templates[index].astype(np.float32) / templates[index].max()
            h, w = digit.shape
            frame[y:y + h, x:x + w] = np.maximum(frame[y:y + h, x:x + w], (digit * 255).astype(np.uint8))
            ys, xs = np.nonzero(digit > 0.3)
            boxes[t].append((index, (x + xs.min(), y + ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)))
        writer.write(frame)
    writer.release()
    return path, boxes


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


def _read_mot(path):
    """Rows (frame, id, x, y, w, h, conf) of a MOT file, checking each line's format."""
    rows = []
    with open(path) as f:
        for line in f:
            fields = line.strip().split(",")
            assert len(fields) == 10 and fields[7:] == ["-1", "-1", "-1"], line
            frame, track_id = int(fields[0]), int(fields[1])
            x, y, w, h, conf = map(float, fields[2:7])
            assert frame >= 1 and track_id >= 1 and w > 0 and h > 0 and 0.0 <= conf <= 1.0, line
            rows.append((frame, track_id, x, y, w, h, conf))
    return rows


def _run(*args):
    return subprocess.run([os.path.join(BIN, "sqair-track"), *args], capture_output=True, text=True, timeout=600,
                          env=ENV)


# ------------------------------------------------------------------------------------------------------------------

def test_tiles_cover_the_frame_and_pad_with_background():
    origins = track.tile_origins(70, 120, 32, 50)
    assert origins == [(y, x) for y in (0, 32, 64) for x in (0, 50, 100)]
    image = np.arange(70 * 120, dtype=np.int64).reshape(70, 120) % 256
    tiles = track.cut_tiles(image.astype(np.uint8), origins, 32, 50)
    assert tiles.shape == (9, 32, 50, 1) and tiles.dtype == np.float32
    np.testing.assert_allclose(tiles[4, :, :, 0], image[32:64, 50:100] / 255.0)
    np.testing.assert_allclose(tiles[8, :6, :20, 0], image[64:70, 100:120] / 255.0)  # The frame's corner...
    assert not tiles[8, 6:].any() and not tiles[8, :, 20:].any()  # ...and zero (background) padding.
    ids = track.IdMap()
    assert [ids(0, 0), ids(1, 0), ids(0, 0), ids(0, 3), ids(1, 0)] == [1, 2, 1, 3, 2] and len(ids) == 3


def test_track_window_is_one_inference_over_the_concatenated_windows():
    """With K = 1, windows that carry the state compute exactly what one inference over the whole sequence computes
    (ids continue, no object is rediscovered); with K > 1 the state handed on is the best particle's."""
    model = models.build("mlp-sqair", models.preset("mlp-sqair", "debug"))
    frames = tf.constant((np.random.default_rng(1).random((2, 7, 32, 32, 1)) < 0.06).astype(np.float32))
    seed = tf.constant([3, 4])
    whole = model(frames, seed=seed, num_particles=1)
    state, parts = model.initial_state(2), []
    for first, last in ((0, 3), (3, 5), (5, 7)):
        best, _, state = model.track_window(frames[:, first:last], state, first, seed, 1)
        parts.append(best)
    assert (whole["object_ids"].numpy() >= 0).any()  # Objects exist, so the continuation is not trivial.
    for key in ("canvas", "z_where", "z_pres", "object_ids", "boxes", "log_weight"):
        expected = np.swapaxes(whole[key].numpy(), 0, 1)
        np.testing.assert_array_equal(np.concatenate([p[key].numpy() for p in parts], axis=1), expected, key)

    best, log_weight, state = model.track_window(frames, model.initial_state(2), 0, seed, 3)
    np.testing.assert_array_equal(state.object_ids.numpy(), best["object_ids"].numpy()[:, -1])
    np.testing.assert_array_equal(state.z_where.numpy(), best["z_where"].numpy()[:, -1])
    assert state.z_what.shape == (2, 2, 4) and log_weight.shape == (2,)


@pytest.mark.slow
def test_sqair_track_follows_two_digits_in_a_synthetic_video(digit_video, tmp_path):
    path, known = digit_video
    out = tmp_path / "out"
    done = _run(path, *TRACK_ARGS, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 tracks" in done.stdout and "video frames/s" in done.stdout
    assert sorted(os.listdir(out)) == ["tracks.gif", "tracks.json", "tracks.txt"]  # Nothing partial left.

    rows = _read_mot(out / "tracks.txt")
    tracked = list(range(11, NUM_FRAMES + 1, 2))  # 1-based frames 11, 13, ...: --warmup-frames 10, --every 2.
    assert {r[0] for r in rows} <= set(tracked)
    ids_of = {0: [], 5: []}  # digit → the id matched in each tracked frame where it is visible (None: missed)
    for t in range(NUM_FRAMES):
        if t + 1 not in tracked:
            continue
        here = [r for r in rows if r[0] == t + 1]
        for digit, box in known[t]:
            # MOT boxes are 1-based: a 0-based left/top x, y is written as x + 1, y + 1.
            matches = [r[1] for r in here if _iou((r[2] - 1, r[3] - 1, r[4], r[5]), box) >= 0.5]
            ids_of[digit].append(matches[0] if matches else None)
    for digit, found in ids_of.items():
        hits = [i for i in found if i is not None]
        assert len(hits) >= 0.9 * len(found), (digit, found)  # Detected at IoU ≥ 0.5 in ≥ 90 % of its frames.
        assert len(set(hits)) == 1, (digit, found)  # One identity for the whole video, across 8 windows.
    assert set(ids_of[0]) != set(ids_of[5])

    with open(out / "tracks.json") as f:
        record = json.load(f)
    summary = record["summary"]
    assert summary["tracks"] == len({r[1] for r in rows}) == 2 and summary["boxes"] == len(rows)
    assert summary["tracked_frames"] == len(tracked) and summary["tiles"] == 4
    np.testing.assert_allclose([r[2:6] for r in record["rows"]], [r[2:6] for r in rows], atol=0.01)
    from PIL import Image

    with Image.open(out / "tracks.gif") as gif:  # PIL merges identical consecutive frames, adding their durations.
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
        assert gif.size == (384, 384) and sum(durations) == 200 * len(tracked)  # --every 2 at 10 fps: 200 ms.


@pytest.mark.parametrize("kind", ["mp4", "gif"])
def test_the_annotated_video_is_written_as_it_goes_and_an_interrupted_one_leaves_nothing(tmp_path, kind):
    config = track.TrackConfig(every=2, video_out=kind, gif_width=64)
    frames = [np.full([48, 64, 3], 20 * i, np.uint8) for i in range(6)]
    sink = track._VideoSink(str(tmp_path / "out"), config, {"video_fps": 10.0}, cv2)
    for i, frame in enumerate(frames):
        sink.add(frame, [(1, (4.0 + i, 8.0, 10.0, 12.0))])
    if kind == "mp4":  # Streamed: the frames are on disk before the end, not held in memory.
        assert os.path.getsize(sink.partial) > 0 and not sink._frames
    written = sink.finish()
    assert written == str(tmp_path / "out" / f"tracks.{kind}.partial") + (".mp4" if kind == "mp4" else "")
    capture = cv2.VideoCapture(written)
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == len(frames)
    interrupted = track._VideoSink(str(tmp_path / "cut"), config, {"video_fps": 10.0}, cv2)
    interrupted.add(frames[0], [])
    interrupted.discard()
    assert not os.path.exists(interrupted.partial)


@pytest.mark.slow
def test_the_saved_model_endpoint_tracks_like_the_in_process_model(digit_video, tmp_path):
    """`sqair-track --model EXPORT_DIR` goes through the SavedModel's `initial_state`/`track_window` signatures (what
    a TF Serving client calls window by window) and must give the in-process model's tracks."""
    path, _ = digit_video
    directory, prefix = pretrained.locate("mnist")
    exported = export.export_model(directory, str(tmp_path / "exports"), num_particles=2, checkpoint=prefix)
    background = video.VideoConfig(scale_width=SIDE, warmup_frames=10, invert=False)
    config = track.TrackConfig(every=2, window=4, num_particles=2, background=background, video_out="none")
    saved = track.track_video(path, track.load_tracker(str(tmp_path / "exports"), 2), config, str(tmp_path / "a"))
    local = track.track_video(path, track.load_tracker("mnist", 2), config, str(tmp_path / "b"))
    assert saved["model"] == exported and local["model"] == "pretrained mnist"
    a, b = _read_mot(tmp_path / "a" / "tracks.txt"), _read_mot(tmp_path / "b" / "tracks.txt")
    assert len(a) == len(b) > 50
    assert [r[:2] for r in a] == [r[:2] for r in b]
    np.testing.assert_allclose([r[2:] for r in a], [r[2:] for r in b], atol=0.02)


@pytest.mark.parametrize("args, message", [
    (["/no/such/video.avi"], "no video file"),
    (["NOT_A_VIDEO"], "OpenCV cannot open"),
    (["VIDEO", "--every", "0"], "--every must be a positive integer"),
    (["VIDEO", "--start", "9", "--end", "9"], "--end 9 must be after --start 9"),
    (["VIDEO", "--model", "/no/such/model"], "neither a shipped model"),
    (["VIDEO", "--model", "mlp-vrnn-run"], "does not carry objects over time"),
    (["VIDEO", "--model", "mnist", "--warmup-frames", "500"], "no frame to track"),
])
def test_bad_input_gives_one_clear_error(args, message, digit_video, tmp_path, debug_data):
    video_path, _ = digit_video
    text = tmp_path / "notes.avi"
    text.write_text("not a video")
    if "mlp-vrnn-run" in args:  # A real run directory of a model without objects over time.
        from trainers import config as config_lib
        from trainers import trainer as trainer_lib

        run_dir = str(tmp_path / "vrnn")
        config = config_lib.preset("debug", (f"data_dir={debug_data}", "total_steps=1"), model="mlp-vrnn")
        trainer_lib.Trainer(config, run_dir, progress=False, log=lambda *a: None).train()
        args = [run_dir if a == "mlp-vrnn-run" else a for a in args]
    args = [video_path if a == "VIDEO" else str(text) if a == "NOT_A_VIDEO" else a for a in args]
    out = tmp_path / "out"
    done = _run(*args, "--out", str(out), "--no-progress", "--scale-width", str(SIDE))
    assert done.returncode == 2, (done.stdout, done.stderr[-2000:])
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("sqair-track: error:") and message in lines[-1], done.stderr[-2000:]
    assert not out.exists() or not os.listdir(out)  # Nothing written.
