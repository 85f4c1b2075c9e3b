"""Reading a run's TensorBoard log back (`trainers.run_history`) and comparing two groups' learning curves."""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

from trainers import run_history

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import compare_learning_curves  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "compare_learning_curves.py")


def _write(workdir, writer, tag, values):
    """Logs {step: value} as TensorBoard scalars in WORKDIR/tensorboard/WRITER, as the trainer does."""
    with tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", writer)).as_default():
        for step, value in values:
            tf.summary.scalar(tag, value, step=step)


def test_scalars_reads_back_what_was_logged_and_keeps_a_relogged_steps_later_value(tmp_path):
    run = str(tmp_path / "run")
    _write(run, "eval", "held_out/counting_accuracy", [(500, 0.5), (1000, 0.75)])
    _write(run, "eval", "held_out/iwae", [(500, 10.0)])
    _write(run, "eval", "held_out/counting_accuracy", [(1000, 0.8), (1500, 0.9)])  # a resume from step 500
    got = run_history.scalars(run, "eval", "held_out/counting_accuracy")
    assert got == pytest.approx({500: 0.5, 1000: 0.8, 1500: 0.9})
    assert run_history.scalars(run, "train", "held_out/counting_accuracy") == {}


def test_training_minutes_sums_each_loops_steps_over_its_rate(tmp_path):
    run = str(tmp_path / "run")
    _write(run, "train", "steps_per_sec", [(60, 1.0), (180, 2.0)])  # 60 steps at 1/s, then 120 at 2/s
    assert run_history.training_minutes(run) == pytest.approx({60: 1.0, 180: 2.0})
    # A run started from another's weights at step 25,000 counts from there, not from 0.
    late = str(tmp_path / "late")
    _write(late, "train", run_history.INIT_STEP_TAG, [(25000, 25000.0)])
    _write(late, "train", "steps_per_sec", [(25060, 1.0), (25180, 2.0)])
    assert run_history.training_minutes(late) == pytest.approx({25060: 1.0, 25180: 2.0})


def test_compare_pairs_runs_by_position_and_averages_the_window():
    curves = {"a1": {0: 0.1, 500: 0.5, 1000: 0.7, 1500: 0.2},
              "a2": {0: 0.1, 500: 0.6, 1000: 0.8, 1500: 0.2},
              "b1": {0: 0.1, 500: 0.6, 1000: 0.9, 1500: 0.9},
              "b2": {0: 0.1, 500: 0.5, 1000: 0.8},  # no step 1500: only common steps count
              }
    text = compare_learning_curves.compare([("A", ["a1", "a2"]), ("B", ["b1", "b2"])], curves, (500, 1500))
    # Window 500–1000 (1500 is not common): a1 0.60, a2 0.70, b1 0.75, b2 0.65.
    assert "| 1 | 0.6000 | 0.7500 | +0.1500 |" in text
    assert "| 2 | 0.7000 | 0.6500 | -0.0500 |" in text
    assert "| mean | 0.6500 | 0.7000 | +0.0500 |" in text
    assert "from -0.0500 to +0.1500" in text
    assert "| 1000 | 0.700 | 0.800 | 0.900 | 0.800 | 0.750 | 0.850 |" in text
    assert "| 1500 |" not in text


def test_cli_compares_real_logs_and_rejects_unpaired_groups(tmp_path):
    runs = {}
    for name, values in {"old": [(500, 0.5), (1000, 0.7)], "new": [(500, 0.6), (1000, 0.8)]}.items():
        runs[name] = str(tmp_path / name)
        _write(runs[name], "eval", "held_out/counting_accuracy", values)
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."))
    done = subprocess.run([sys.executable, SCRIPT, "--group", f"old={runs['old']}", "--group", f"new={runs['new']}",
                           "--window", "500,1000"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "| 1 | 0.6000 | 0.7000 | +0.1000 |" in done.stdout
    bad = subprocess.run([sys.executable, SCRIPT, "--group", f"old={runs['old']},{runs['old']}",
                          "--group", f"new={runs['new']}"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "same number of runs" in bad.stderr
    missing = subprocess.run([sys.executable, SCRIPT, "--group", f"old={runs['old']}", "--group",
                              f"new={tmp_path / 'nothing'}"], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "has no held_out/counting_accuracy" in missing.stderr
