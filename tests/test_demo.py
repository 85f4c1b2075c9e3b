"""The main job (`sqair-demo`) end to end on a tiny fresh run, with the shipped pretrained model; and its resume."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from sqair_tf import refinement

pytestmark = pytest.mark.slow  # the main job end to end, twice

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def _demo(rundir):
    return subprocess.run(
        [sys.executable, "-m", "tools.demo", "--workdir", rundir, "--num-train", "64", "--num-test", "16",
         "--preset", "debug", "--set", "model.image_shape=50,50,1", "--set", "total_steps=4", "--no-jit",
         "--no-progress"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)


def test_main_job_shows_the_pretrained_model_and_trains_a_fresh_one(tmp_path):
    rundir = str(tmp_path / "demo")
    out = _demo(rundir)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("data/train.json", "data/test.json", "data_preview.png", "train/config.json",
                 "train/checkpoints/ckpt-4.index", "train/eval/report.json", "pretrained-mnist/report.json",
                 "pretrained-mnist/figures/reconstruction.png", "pretrained-mnist/figures/reconstruction.gif",
                 "pretrained-mnist/figures/generation.png"):
        assert os.path.exists(os.path.join(rundir, name)), name
    assert os.listdir(os.path.join(rundir, "train", "tensorboard", "eval"))

    # Side by side on the same 16 held-out sequences: the shipped model is the trained one.
    shipped = json.load(open(os.path.join(rundir, "pretrained-mnist", "report.json")))
    fresh = json.load(open(os.path.join(rundir, "train", "eval", "report.json")))
    assert shipped["num_sequences"] == fresh["num_sequences"] == 16 and fresh["step"] == 4
    assert shipped["step"] > 1000 and shipped["counting_accuracy"] > 0.8 > fresh["counting_accuracy"]
    assert "held-out results: 16 test sequences of 10 frames, K=5" in out.stdout
    assert out.stdout.count(f"{shipped['counting_accuracy']:9.3f}") >= 1 and "MOTA: 1 - (missed" in out.stdout
    shown = shipped["tracking"]["detection_count_accuracy"]
    assert f"{shipped['visible_counting_accuracy']:8.3f} {shown:6.3f} {shipped['tracking']['MOTA']:7.3f}" in out.stdout
    assert "shown: the best particle's objects that draw something" in out.stdout

    # The figures show digits: every reconstruction row pair has ink in its input row.
    figure = Image.open(os.path.join(rundir, "pretrained-mnist", "figures", "reconstruction.png")).convert("L")
    assert figure.getextrema()[1] > 200
    export = os.path.join(rundir, "export", str(shipped["step"]), "saved_model.pb")
    assert os.path.exists(export)
    # The SavedModel's `track` refines as the evaluation did: the package's steps and smooth-motion weight.
    info = json.load(open(os.path.join(os.path.dirname(export), "assets.extra", "sqair_export.json")))
    assert ((info["refine_steps"], info["motion_weight"]) == (shipped["refine_steps"], shipped["motion_weight"])
            == (refinement.STEPS, refinement.MOTION_WEIGHT))
    assert "`track` from the SavedModel on 3 held-out sequences" in out.stdout
    tracked = [line for line in out.stdout.splitlines() if line.startswith("  sequence ")]
    assert len(tracked) == 3 and all("true count 0" not in line for line in tracked)

    again = _demo(rundir)  # Keeps the data and the export, resumes the fresh run (already at its last step).
    assert again.returncode == 0, again.stderr[-3000:]
    assert "keeping the existing train split" in again.stdout and "resumed from" in again.stdout
    assert os.listdir(os.path.join(rundir, "export")) == [str(shipped["step"])]  # The same refinement: reused.
