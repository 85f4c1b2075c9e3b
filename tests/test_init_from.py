"""`sqair-train --init-from`: a new run that starts from another run's or a shipped model's weights and step."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from trainers import checkpoints
from trainers import pretrained
from trainers import run_history
from trainers import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def _weights(workdir, prefix):
    """The model weights of a checkpoint, as NumPy arrays in the model's order."""
    model, _, _ = checkpoints.load_model(workdir, prefix)
    return [w.numpy() for w in model.weights]


def _optimizer_state(prefix):
    """(update count, largest |value| of the optimizer's moments) in a training checkpoint."""
    reader = tf.train.load_checkpoint(prefix)
    moments = [name for name in reader.get_variable_to_shape_map() if name.startswith("optimizer/_variables/")]
    assert moments, "no optimizer moments in the checkpoint"
    return (reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"),
            max(float(np.abs(reader.get_tensor(name)).max()) for name in moments))


@pytest.mark.slow
def test_a_run_starts_from_another_runs_weights_and_step_with_a_fresh_optimizer(debug_data, debug_run, tmp_path):
    workdir = str(tmp_path / "finetune")

    def sqair_train(steps):  # A process of its own: what TensorFlow keeps of a Trainer goes with it.
        done = subprocess.run([sys.executable, "-m", "trainers.train", "--workdir", workdir, "--init-from", debug_run,
                               "--data", debug_data, "--no-progress", "--steps", str(steps)], cwd=REPO, env=ENV,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    out = sqair_train(4)
    source_prefix = os.path.join(debug_run, "checkpoints", "ckpt-2")
    assert f"initialised from {source_prefix} at step 2" in out and "done at step 4" in out

    # Without --preset the run takes the source's recipe and model; its config records where it started.
    config, source_config = checkpoints.load_config(workdir), checkpoints.load_config(debug_run)
    assert config.init_from == os.path.abspath(debug_run) and config.data_dir == os.path.abspath(debug_data)
    assert config.model == source_config.model and config.learning_rate == source_config.learning_rate

    # Its first checkpoint holds the source's weights and step exactly.
    first = os.path.join(workdir, "checkpoints", "ckpt-2")
    ours, theirs = _weights(workdir, first), _weights(debug_run, source_prefix)
    assert len(ours) == len(theirs) > 10
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    assert tf.train.load_checkpoint(first).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 2
    # The optimizer's moments start at zero; its update count, which the learning-rate schedule reads, goes on.
    (updates, largest), (source_updates, source_largest) = _optimizer_state(first), _optimizer_state(source_prefix)
    assert updates == source_updates == 2 and largest == 0 < source_largest
    # Training then moved the weights away from the source's.
    trained = _weights(workdir, os.path.join(workdir, "checkpoints", "ckpt-4"))
    assert any(not np.array_equal(a, b) for a, b in zip(trained, theirs))

    # The same command again resumes the run's own checkpoint; it does not start over from the source.
    out = sqair_train(6)
    assert "resumed from" in out and "initialised from" not in out and "done at step 6" in out
    # The run's training minutes count its own steps (2 → 4 → 6), not the source's two.
    rate, minutes = run_history.scalars(workdir, "train", "steps_per_sec"), run_history.training_minutes(workdir)
    assert sorted(minutes) == [4, 6]
    assert minutes[4] == pytest.approx(2 / rate[4] / 60) and minutes[6] == pytest.approx(minutes[4] + 2 / rate[6] / 60)


@pytest.mark.slow
def test_bad_sources_are_refused_with_one_line_and_nothing_written(debug_data, debug_run, tmp_path, capsys):
    def refused(name, *args):
        workdir = str(tmp_path / name)
        assert train.main(["--workdir", workdir, "--data", debug_data, "--no-progress", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("sqair-train: error: init_from") and len(err.strip().splitlines()) == 1, err
        assert not os.path.exists(os.path.join(workdir, "checkpoints")) or not os.listdir(
            os.path.join(workdir, "checkpoints"))
        return err

    err = refused("missing", "--init-from", str(tmp_path / "nope"))
    assert "is not a run directory, a checkpoint prefix or a shipped model (shipped: mnist" in err
    err = refused("empty", "--init-from", str(tmp_path))  # A directory without checkpoints.
    assert "has no checkpoint" in err
    err = refused("not_past", "--init-from", debug_run, "--steps", "2")
    assert "is at step 2, and this run stops at total_steps 2: pass --steps past 2" in err
    err = refused("other_model", "--init-from", debug_run, "--preset", "debug", "--set", "model.hidden_size=12",
                  "--steps", "4")
    assert "do not fit the run's model 'mlp-sqair'" in err


def test_sources_resolve_to_a_config_directory_and_a_checkpoint_prefix(debug_run):
    prefix = os.path.join(debug_run, "checkpoints", "ckpt-2")
    assert checkpoints.resolve_init_source(debug_run) == (debug_run, prefix)
    assert checkpoints.resolve_init_source(prefix) == (os.path.abspath(debug_run), prefix)
    directory, weights = pretrained.locate("mnist")
    assert checkpoints.resolve_init_source("mnist") == (directory, weights)
    assert checkpoints.resolve_init_source(directory) == (directory, weights)
    assert checkpoints.resolve_init_source(weights) == (directory, weights)
    with pytest.raises(checkpoints.CheckpointError, match="shipped: mnist, pedestrians"):
        checkpoints.resolve_init_source("mnist_v2")
