"""`sqair-data from-video` (`data_pipelines/video.py`) on a synthetic video the test writes with OpenCV: dark
rectangles moving over a static light textured background, whose boxes are known, so the proxy ground truth can be checked
against them; plus determinism, the time split, bad videos and the command line."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data_pipelines import records
from data_pipelines import video
from data_pipelines.errors import DataError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIDE, NUM_FRAMES = 96, 120
CONFIG = video.VideoConfig(crop=48, seq_len=3, max_objects=3, frame_stride=2, scale_width=SIDE, crop_stride=48,
                           min_area=40, val_fraction=0.25, warmup_frames=20)


def _rectangles(t):
    """The known objects of frame t: (y_min, x_min, y_max, x_max), max exclusive, in video pixels.

    Both enter after the background model's warm-up (an object there from the start would be learnt as background
    and leave a ghost), each moves within one 48×48 crop (so crop edges never cut one), and each moves into new
    pixels every few frames (a still, uniform object is slowly absorbed into any adaptive background).
    """
    boxes = []
    if 20 <= t < 110:  # Top-left crop, moving right 0.4 px per frame.
        x0 = 2 + int(0.4 * (t - 20))
        boxes.append((6, x0, 20, x0 + 10))
    if 30 <= t < 100:  # Bottom-right crop, moving down 0.3 px per frame.
        y0 = 50 + int(0.3 * (t - 30))
        boxes.append((y0, 60, y0 + 16, 70))
    return boxes


@pytest.fixture(scope="module")
def synthetic_video(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("video") / "rectangles.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FFV1"), 10, (SIDE, SIDE), isColor=False)
    # Dark objects on a light floor, like people in vtest.avi: inverted, they are 230 on a 40–90 background.
    background = np.random.default_rng(0).integers(165, 215, (SIDE, SIDE)).astype(np.uint8)
    for t in range(NUM_FRAMES):
        frame = background.copy()
        for y0, x0, y1, x1 in _rectangles(t):
            frame[y0:y1, x0:x1] = 25
        writer.write(frame)
    writer.release()
    return path


def _records(data_dir, split):
    import tensorflow as tf

    manifest = records.read_manifest(data_dir, split)
    out = []
    for raw in tf.data.TFRecordDataset(manifest["shard_paths"]):
        example = tf.train.Example.FromString(raw.numpy()).features.feature
        ints = lambda key: np.asarray(example[key].int64_list.value)  # noqa: E731
        out.append({"boxes": ints("boxes").reshape(CONFIG.seq_len, CONFIG.max_objects, 4),
                    "visible_count": ints("visible_count"), "object_ids": ints("object_ids"),
                    "frames": np.frombuffer(example["frames"].bytes_list.value[0], np.uint8).reshape(
                        CONFIG.seq_len, CONFIG.crop, CONFIG.crop)})
    return manifest, out


def test_proxy_ground_truth_matches_the_drawn_rectangles(synthetic_video, tmp_path):
    out = str(tmp_path / "data")
    manifests = video.from_video(synthetic_video, out, CONFIG)
    checked = 0
    for split in records.SPLITS:
        manifest, seqs = _records(out, split)
        assert manifest["proxy_ground_truth"] and manifest["num_sequences"] == len(seqs) > 0
        for seq, origin in zip(seqs, manifest["sequence_origins"]):
            y, x = origin["crop_yx"]
            assert (seq["object_ids"] == -1).all()  # The proxy has no identities.
            for i, t in enumerate(origin["video_frames"]):
                truth = []
                for y0, x0, y1, x1 in _rectangles(t):  # The known rectangles inside this crop, in crop pixels.
                    box = (max(y0 - y, 0), max(x0 - x, 0), min(y1 - y, CONFIG.crop), min(x1 - x, CONFIG.crop))
                    if box[2] > box[0] and box[3] > box[1]:
                        truth.append(box)
                assert seq["visible_count"][i] == len(truth), (split, origin, i, t)
                found = sorted(tuple(b) for b in seq["boxes"][i][:len(truth)])
                # The symmetric opening moves no edge, but the 5×5 median blur spreads a bright edge up to 2 px into
                # the textured background, where the blurred pixels no longer match the background model.
                np.testing.assert_allclose(np.asarray(found, float), np.asarray(sorted(truth), float), atol=2)
                # The stored frame is the (median-blurred, so corner-rounded) object on black: inverted (25 → 230),
                # then rescaled so that the frame's brightest pixel, the interior, is 255; nothing kept beyond the
                # 2 px halo.
                near = np.zeros([CONFIG.crop, CONFIG.crop], bool)
                for y0, x0, y1, x1 in truth:
                    assert (seq["frames"][i][y0 + 2:y1 - 2, x0 + 2:x1 - 2] == 255).all()
                    near[max(y0 - 2, 0):y1 + 2, max(x0 - 2, 0):x1 + 2] = True
                assert not (seq["frames"][i][~near] > 0).any()
                checked += 1
    assert checked > 20
    # Disjoint time ranges: every test frame comes after every train frame.
    train_frames = [t for o in manifests["train"]["sequence_origins"] for t in o["video_frames"]]
    test_frames = [t for o in manifests["test"]["sequence_origins"] for t in o["video_frames"]]
    assert max(train_frames) < manifests["test"]["video_frame_range"][0] <= min(test_frames)
    assert min(train_frames) >= CONFIG.warmup_frames


def test_same_video_and_settings_give_byte_identical_files(synthetic_video, tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    video.from_video(synthetic_video, a, CONFIG)
    video.from_video(synthetic_video, b, CONFIG)
    for name in sorted(os.listdir(a)):
        if name.endswith(".tfrecord"):
            with open(os.path.join(a, name), "rb") as f, open(os.path.join(b, name), "rb") as g:
                assert f.read() == g.read(), name


def test_bad_videos_and_settings_are_one_clear_error_and_write_nothing(synthetic_video, tmp_path):
    text = tmp_path / "notes.avi"
    text.write_text("not a video")
    short = str(tmp_path / "short.avi")
    writer = cv2.VideoWriter(short, cv2.VideoWriter_fourcc(*"FFV1"), 10, (SIDE, SIDE), isColor=False)
    for _ in range(5):
        writer.write(np.zeros((SIDE, SIDE), np.uint8))
    writer.release()
    cases = [
        (str(tmp_path / "missing.avi"), CONFIG, "no video file"),
        (str(text), CONFIG, "cannot open|no frames"),
        (short, CONFIG, "has 5 frames; these settings need more than"),
        (synthetic_video, video.VideoConfig(**{**CONFIG.__dict__, "min_area": 10_000}), "no train sequence"),
    ]
    for path, config, message in cases:
        out = tmp_path / f"out-{len(message)}"
        with pytest.raises(DataError, match=message):
            video.from_video(path, str(out), config)
        assert not out.exists() or not any(name.endswith(".json") for name in os.listdir(out))
    with pytest.raises(DataError, match="--crop 200 is larger"):
        video.VideoConfig(crop=200, scale_width=96)


def test_command_line_writes_splits_that_verify_and_refuses_a_bad_file(synthetic_video, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
    run = lambda *args: subprocess.run([sys.executable, "-m", "data_pipelines.cli", *args], env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=300)
    out = str(tmp_path / "data")
    done = run("from-video", synthetic_video, "--out", out, "--crop", "48", "--seq-len", "3", "--frame-stride", "2",
               "--scale-width", str(SIDE), "--crop-stride", "48", "--min-area", "40", "--val-fraction", "0.25",
               "--warmup-frames", "20", "--history", "400")  # With the progress bar (it once crashed).
    assert done.returncode == 0, done.stderr[-2000:]
    assert "train sequences" in done.stdout and "proxy" in done.stdout
    assert f"{NUM_FRAMES}/{NUM_FRAMES}" in done.stderr  # The bar knows the frame count: an ETA.
    for split in records.SPLITS:
        verified = run("verify", out, "--split", split)
        assert verified.returncode == 0 and verified.stdout.startswith("ok:"), verified.stderr[-2000:]
    with open(os.path.join(out, "train.json")) as f:
        assert json.load(f)["from_video"]["crop"] == 48
    bad = run("from-video", str(tmp_path / "nope.avi"), "--out", str(tmp_path / "x"), "--quiet")
    assert bad.returncode == 2 and bad.stderr.startswith("sqair-data: error: no video file")
    assert "Traceback" not in bad.stderr


@pytest.mark.slow
def test_a_model_trains_on_video_data_and_is_evaluated_against_the_proxy(synthetic_video, tmp_path):
    """Video data goes through the real trainer and `sqair-eval`: counting is scored against the proxy and says so;
    tracking (the proxy has no identities) and the addition experiment (no digit labels) are n/a, not invented."""
    from evaluation import cli as eval_cli
    from trainers import config as config_lib
    from trainers import trainer as trainer_lib

    data = str(tmp_path / "data")
    video.from_video(synthetic_video, data, video.VideoConfig(**{**CONFIG.__dict__, "crop": 32, "crop_stride": 32}))
    run_dir = str(tmp_path / "run")
    config = config_lib.preset("debug", (f"data_dir={data}", "total_steps=2", "curriculum_start=3"))
    trainer_lib.Trainer(config, run_dir, progress=False, log=lambda *a: None).train()
    out = str(tmp_path / "eval")
    assert eval_cli.main(["--workdir", run_dir, "--k", "2", "--num", "4", "--batch", "2", "--no-jit", "--out", out,
                          "--figures", "--observed", "2", "--no-progress"]) == 0
    (report_path,) = [name for name in os.listdir(out) if name.endswith(".json")]
    with open(os.path.join(out, report_path)) as f:
        report = json.load(f)
    assert report["proxy_ground_truth"] is True and report["tracking"] is None and "addition" not in report
    assert 0.0 <= report["counting_accuracy"] <= 1.0 and 0.0 <= report["visible_counting_accuracy"] <= 1.0
    with open(os.path.join(out, report_path[:-5] + ".md")) as f:
        table = f.read()
    assert "counting accuracy (proxy" in table and "proxy ground truth has no identities" in table
    assert os.path.exists(os.path.join(out, "figures", "generation.png"))
