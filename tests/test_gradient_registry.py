"""Traced training loops do not outlive their trainer (trainers/gradient_registry.py) or their curriculum stage."""

import gc

import pytest
import tensorflow as tf
from tensorflow.python.framework import func_graph
from tensorflow.python.framework import ops

from trainers import config as config_lib
from trainers import gradient_registry
from trainers import trainer as trainer_lib


def _custom_gradients():
    return {name for name in ops._gradient_registry._registry if name.startswith("CustomGradient-")}


@tf.custom_gradient
def _scaled_identity(x):
    return tf.identity(x), lambda dy: 3.0 * dy


def _traced_gradient():
    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = _scaled_identity(x)
        return tape.gradient(y, x)

    return float(grad(tf.constant(2.0)))


def test_only_the_registrations_made_inside_are_dropped_and_gradients_taken_inside_still_work():
    outside = _custom_gradients()
    assert _traced_gradient() == 3.0
    registered = _custom_gradients() - outside
    assert len(registered) == 1  # What TF does: one entry per trace, kept for good.
    with gradient_registry.custom_gradients_dropped():
        assert _traced_gradient() == 3.0  # The gradient is taken inside, while the entry exists.
        assert len(_custom_gradients() - outside - registered) == 1
    assert _custom_gradients() == outside | registered  # Its own entry gone, the one made before it kept.


def _step_graphs():
    """How many traced training steps are alive."""
    gc.collect()
    return sum(isinstance(o, func_graph.FuncGraph) and o.name == "_fused_step" for o in gc.get_objects())


@pytest.mark.slow
def test_a_deleted_trainer_leaves_no_traced_training_loop_alive(debug_data, tmp_path):
    before = _step_graphs()
    trainer = trainer_lib.Trainer(config_lib.preset("debug", [f"data_dir={debug_data}", "total_steps=2"]),
                                  str(tmp_path), progress=False, log=lambda *a: None)
    trainer.train()
    assert _step_graphs() > before  # The trace lives as long as the trainer...
    del trainer
    assert _step_graphs() == before  # ...and no longer: with TF 2.21's registry it pinned ~0.7 GB per trainer.


@pytest.mark.slow
def test_only_the_current_curriculum_stage_keeps_its_traced_loop(debug_data, tmp_path):
    before = _step_graphs()
    trainer = trainer_lib.Trainer(config_lib.preset("debug", [
        f"data_dir={debug_data}", "total_steps=4", "curriculum_start=2", "max_seq_len=3", "curriculum_stage_steps=2",
        "steps_per_loop=2", "eval_every=100", "checkpoint_every=100"]), str(tmp_path), progress=False,
        log=lambda *a: None)
    trainer.train(finalize=False)
    assert trainer._loop_keys == [(2, None), (3, None)]  # Two stages traced, the last alive: kept,
    # four stages of `debug` held 2.99 GB resident at the end, against 1.37 GB (BUILD.md "Memory").
    assert _step_graphs() == before + 1
