"""The model shipped with the package: it loads by name, is as good on held-out data as its provenance says, and
exports from `sqair-export --pretrained` to a SavedModel that TF's own loader serves.

The held-out sequences are the benchmark's test split, generated here as `make pretrained` does (10,000 sequences,
paper preset, seed 1, the embedded digits' test half; about 5 s); the tests use its first 200, the sequences
`provenance.json` records its `held_out_200` figures on.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from evaluation import cli as eval_cli
from evaluation import evaluator
from serving import export
from sqair_tf import glimpse
from sqair_tf import refinement
from trainers import pretrained

pytestmark = pytest.mark.slow  # the full-size shipped model on 200 sequences, and its export

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    from data_pipelines import generate, moving_mnist

    out = str(tmp_path_factory.mktemp("mnist_test"))
    generate.generate_split(out, "test", 10_000, 1, moving_mnist.preset("paper"))
    return out


@pytest.mark.parametrize("name", ["mnist", "pedestrians"])
def test_shipped_model_is_listed_with_its_provenance_and_small_enough(name):
    assert pretrained.available() == ["mnist", "pedestrians"]
    directory, prefix = pretrained.locate(name)
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
    assert size <= 15e6, size
    record = pretrained.provenance(name)
    mnist_only = ("held_out_200", "held_out_refined", "held_out_200_refined") if name == "mnist" else ()
    for key in ("step", "seed", "training", "held_out", "training_data") + mnist_only:
        assert key in record, key
    assert record["training"]["command"].startswith(("sqair-train ", "sqair-data from-video "))
    assert record["training"]["commit"]
    assert record["held_out"].get("proxy_ground_truth", False) is (name == "pedestrians")  # mnist predates the key.
    with pytest.raises(pretrained.PretrainedError, match="no pretrained model 'nosuch'; shipped: mnist, pedestrians"):
        pretrained.locate("nosuch")


def test_shipped_model_counts_and_tracks_held_out_sequences(test_split, tmp_path):
    # As `sqair-demo` shows it: boxes from latents refined on the frames (BUILD.md "Refined boxes").
    out = tmp_path / "eval"
    code = eval_cli.main(["--pretrained", "mnist", "--data", test_split, "--num", "200", "--k", "5",
                          "--chunk", "5", "--batch", "50", "--no-addition", "--no-progress", "--out", str(out),
                          "--refine-steps", str(refinement.STEPS)])
    assert code == 0
    (report_path,) = [p for p in out.iterdir() if p.suffix == ".json"]
    report = json.loads(report_path.read_text())
    recorded = pretrained.provenance("mnist")["held_out_200_refined"]
    assert recorded["refine_steps"] == report["refine_steps"] == refinement.STEPS
    assert recorded["motion_weight"] == report["motion_weight"] == refinement.MOTION_WEIGHT
    assert pretrained.provenance("mnist")["box_rule"] == glimpse.box_rule()  # Recorded with the boxes scored now.
    assert report["num_sequences"] == 200 and report["step"] == pretrained.provenance("mnist")["step"]
    # Issue 10's bar for the shipped model is counting ≥ 0.95 and MOTA ≥ 0.90. Counting meets it; MOTA does not
    # yet (benchmarks/RESULTS.md), so MOTA is held to what was measured when the model was packaged.
    assert report["counting_accuracy"] >= 0.95, report["counting_accuracy"]
    assert abs(report["counting_accuracy"] - recorded["counting_accuracy"]) < 0.01
    assert report["tracking"]["MOTA"] >= recorded["MOTA"] - 0.02, (report["tracking"]["MOTA"], recorded["MOTA"])
    # Refinement moves boxes, not counts: the amortised figures recorded for the same sequences count the same.
    assert report["counting_accuracy"] == pytest.approx(pretrained.provenance("mnist")["held_out_200"][
        "counting_accuracy"], abs=1e-6)


def test_python_api_loads_it_by_name():
    model, config, step = pretrained.load("mnist")
    assert step == pretrained.provenance("mnist")["step"] and config.model.image_shape == (50, 50, 1)
    outputs = model(tf.zeros([1, 2, 50, 50, 1]), seed=tf.constant([0, 0]), num_particles=2)
    assert outputs["canvas"].shape == (2, 2, 50, 50, 1)


def test_sqair_export_pretrained_writes_a_saved_model_that_tracks(test_split, tmp_path):
    base = tmp_path / "exports"
    out = subprocess.run([os.path.join(BIN, "sqair-export"), "--pretrained", "mnist", "--out", str(base)],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    (version,) = os.listdir(base)
    assert int(version) == pretrained.provenance("mnist")["step"]
    ds, _, _ = evaluator.stream_batches(test_split, "test", 32, 32)
    batch = next(iter(ds))
    shown = batch["count"].numpy() > 0  # Sequences with digits.
    frames, visible = batch["frames"].numpy()[shown], batch["visible"].numpy()[shown].sum(-1)  # [B', T, ...], [B', T]
    tracked = export.track_saved_model(str(base / version), frames)  # TF's own loader, no sqair code.
    right = tracked["counts"] == visible  # [B', T]: the model's count against the digits visible in the frame.
    assert right.mean() >= 0.9, (tracked["counts"], visible)
    assert np.all(tracked["boxes"][..., 2] <= 50) and np.all(tracked["boxes"][..., 3] <= 50)

    bad = subprocess.run([os.path.join(BIN, "sqair-export"), "--pretrained", "nosuch", "--out", str(base)],
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no pretrained model 'nosuch'" in bad.stderr


def _walkers(t):
    """(top, left, height, width) of the dark walkers in frame t of the synthetic hall (240×180, the size
    `sqair-track` downscales vtest.avi to, so no scaling): A walks right inside the tile at rows 64–127, columns
    0–63; B walks left from the tile at columns 192–239 into the one at 128–191."""
    out = []
    if 10 <= t < 110:
        out.append(("A", (100, 8 + int(0.35 * (t - 10)), 24, 9)))
    if 20 <= t < 115:
        out.append(("B", (20, 200 - int(0.3 * (t - 20)), 22, 8)))
    return out


def test_pedestrian_model_tracks_walkers_with_sqair_track(tmp_path):
    """`sqair-track`'s default model on a hall the test draws with OpenCV: dark elliptical walkers on a light
    textured floor, as people look in vtest.avi. A walker that stays in one tile keeps one id for the whole video
    (windows carry the state); one that crosses a tile border gets a new id there (the documented limit)."""
    import cv2

    path = str(tmp_path / "hall.avi")
    floor = np.random.default_rng(0).integers(170, 210, (180, 240)).astype(np.uint8)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"FFV1"), 10, (240, 180), isColor=False)
    truth = {}
    for t in range(120):
        frame = floor.copy()
        for name, (y, x, h, w) in _walkers(t):
            yy, xx = np.mgrid[0:h, 0:w]
            body = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2 <= 1.0
            frame[y:y + h, x:x + w][body] = 40
            truth.setdefault(t, []).append((name, (x, y, w, h)))
        writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    done = subprocess.run([os.path.join(BIN, "sqair-track"), path, "--out", str(out), "--warmup-frames", "5",
                           "--video-out", "none", "--no-progress"], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(",") for line in open(out / "tracks.txt").read().splitlines()]

    def iou(a, b):
        iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)

    ids = {"A": [], "B": []}
    for t in range(5, 120, 5):  # The tracked frames: --warmup-frames 5, every 5th (the model's training spacing).
        here = [(int(r[1]), (float(r[2]) - 1, float(r[3]) - 1, float(r[4]), float(r[5]))) for r in rows
                if int(r[0]) == t + 1]
        for name, box in truth.get(t, []):
            matched = [i for i, b in here if iou(b, box) >= 0.4]
            ids[name].append(matched[0] if matched else None)
    found_a = [i for i in ids["A"] if i is not None]
    assert len(found_a) >= 0.9 * len(ids["A"]) and len(set(found_a)) == 1, ids["A"]
    found_b = [i for i in ids["B"] if i is not None]
    assert len(found_b) >= 0.7 * len(ids["B"]) and 1 <= len(set(found_b)) <= 2, ids["B"]
