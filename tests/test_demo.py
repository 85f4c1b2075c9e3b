"""The main job (`sqair-demo`) end to end on a tiny configuration, and its resume on a second run."""

import os
import subprocess
import sys

from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def _demo(rundir):
    return subprocess.run(
        [sys.executable, "-m", "trainers.demo", "--rundir", rundir, "--num-train", "64", "--num-test", "16",
         "--train-preset", "debug", "--set", "model.image_shape=50,50,1", "--set", "total_steps=4",
         "--no-progress"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)


def test_main_job_writes_data_checkpoints_figures_and_logs(tmp_path):
    rundir = str(tmp_path / "demo")
    out = _demo(rundir)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "held-out counting accuracy (paper definition, 16 test sequences of 10 frames" in out.stdout
    for name in ("data/train.json", "data/test.json", "data_preview.png", "train/config.json",
                 "train/checkpoints/ckpt-4.index", "reconstructions.png", "export/4/saved_model.pb"):
        assert os.path.exists(os.path.join(rundir, name)), name
    assert os.listdir(os.path.join(rundir, "train", "tensorboard", "eval"))
    assert "`track` from the SavedModel on 3 held-out sequences" in out.stdout
    assert out.stdout.count("  sequence ") == 3 and "ids [[" in out.stdout
    figure = Image.open(os.path.join(rundir, "reconstructions.png"))
    # 6 sequences × (input, reconstruction) rows of 50-pixel frames at scale 3 (+2-pixel gaps), 10 frames wide.
    assert figure.size[1] == 12 * (50 * 3 + 2) + 2 and figure.size[0] > 10 * (50 * 3 + 2)

    again = _demo(rundir)  # Keeps the data, resumes training (already at its last step), evaluates again.
    assert again.returncode == 0, again.stderr[-3000:]
    assert "keeping the existing train split" in again.stdout and "resumed from" in again.stdout
