"""The model interface (`sqair_tf/interface.py`): every registered model keeps the contract the trainer, the
evaluator, the exporter and the figures rely on; the registry and the config choose models by name."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from sqair_tf import interface
from sqair_tf import models
from trainers import config as config_lib

NAMES = models.names()


def _build(name):
    model = models.build(name, models.preset(name, "debug"))
    h, w, c = model.config.image_shape
    frames = tf.random.stateless_uniform([2, 3, h, w, c], seed=[4, 2])
    return model, frames


@pytest.mark.parametrize("name", NAMES)
def test_forward_pass_returns_the_outputs_its_flags_promise(name):
    model, frames = _build(name)
    k = 3
    out = model(frames, seed=tf.constant([1, 2]), num_particles=k)
    required = interface.required_outputs(model)
    assert set(required) <= set(out)
    # A flag that is off means its outputs are absent, so a consumer cannot mistake zeros for a measurement.
    assert ("log_q_discrete" in out) == model.has_discrete_latents
    assert ("z_pres" in out) == model.has_objects
    t, bk = 3, 2 * k
    assert tuple(out["canvas"].shape) == (t, bk) + model.config.image_shape
    for key in ("log_likelihood", "log_p_continuous", "log_q_continuous", "log_weight"):
        assert tuple(out[key].shape) == (t, bk), key
    # log w_t = log p(x_t | z) + log p(z_t) − log q(z_t), with the discrete terms when the model has them.
    expected = out["log_likelihood"] + out["log_p_continuous"] - out["log_q_continuous"]
    if model.has_discrete_latents:
        expected += out["log_p_discrete"] - out["log_q_discrete"]
    np.testing.assert_allclose(out["log_weight"].numpy(), expected.numpy(), rtol=1e-5, atol=1e-2)
    # A deterministic function of (weights, frames, seed); another seed gives other particles.
    again = model(frames, seed=tf.constant([1, 2]), num_particles=k)
    np.testing.assert_array_equal(out["log_weight"].numpy(), again["log_weight"].numpy())
    other = model(frames, seed=tf.constant([1, 3]), num_particles=k)
    assert not np.allclose(out["log_weight"].numpy(), other["log_weight"].numpy())


@pytest.mark.parametrize("name", NAMES)
def test_generation_and_samples_through_the_interface(name):
    model, frames = _build(name)
    observed, generated = model.generate(frames[:, :2], 4, tf.constant([5, 6]))
    assert tuple(observed["canvas"].shape) == (2, 2) + model.config.image_shape
    assert tuple(generated["canvas"].shape) == (4, 2) + model.config.image_shape
    samples = model.sample(3, 2, tf.constant([7, 8]))
    assert tuple(samples["canvas"].shape) == (2, 3) + model.config.image_shape
    if model.has_objects:
        assert {"z_pres", "boxes", "object_ids"} <= set(generated) and {"boxes"} <= set(samples)


@pytest.mark.parametrize("name", NAMES)
def test_best_particle_representation_and_boxes(name):
    model, frames = _build(name)
    k = 2
    out = model(frames, seed=tf.constant([3, 3]), num_particles=k)
    log_weights = interface.sequence_log_weights(out, k)  # [B, K]
    keys = ("canvas",) + tuple(model.representation_keys) + tuple(model.box_inputs)
    best = interface.best_particle({key: out[key] for key in dict.fromkeys(keys)}, log_weights)
    # The best particle is the argmax of the sequence log weights: its canvas is that particle's.
    winner = np.argmax(log_weights.numpy(), axis=1)
    for b in range(2):
        np.testing.assert_array_equal(best["canvas"][b].numpy(), out["canvas"][:, b * k + winner[b]].numpy())
    representation = np.asarray(model.frame_representation(best))
    assert representation.shape[:2] == (2, 3) and representation.ndim == 3
    if model.has_objects:  # Boxes recomputed from the best particle equal the model's own boxes of that particle.
        rows = np.arange(2) * k + winner
        np.testing.assert_allclose(model.drawn_boxes(best).numpy(),
                                   np.swapaxes(out["boxes"].numpy()[:, rows], 0, 1), atol=1e-5)
    else:
        with pytest.raises(NotImplementedError, match="no objects"):
            model.drawn_boxes(best)


def test_registry_and_config_choose_models_by_name():
    assert NAMES == ["mlp-sqair", "mlp-vrnn"]
    with pytest.raises(ValueError, match="unknown model 'air'.*mlp-sqair"):
        models.build("air", models.preset("mlp-sqair"))
    with pytest.raises(ValueError, match="needs a VRNNConfig"):
        models.build("mlp-vrnn", models.preset("mlp-sqair", "debug"))
    vrnn = config_lib.preset("debug", model="mlp-vrnn")
    assert vrnn.model_name == "mlp-vrnn" and vrnn.model == models.preset("mlp-vrnn", "debug")
    assert config_lib.preset("fast", model="mlp-vrnn").model == models.preset("mlp-vrnn", "paper")
    # config.json round trip keeps the model; a config without model_name (older runs) is MLP-SQAIR.
    assert config_lib.TrainConfig.from_json(vrnn.to_json()) == vrnn
    old = config_lib.preset("debug").to_dict()
    del old["model_name"]
    assert config_lib.TrainConfig.from_dict(old) == config_lib.preset("debug")
    # `model.` overrides reach the chosen model's fields, and only those.
    assert vrnn.with_overrides(["model.z_dim=3"]).model.z_dim == 3
    with pytest.raises(ValueError, match="unknown config key 'model.num_slots'"):
        vrnn.with_overrides(["model.num_slots=2"])
    with pytest.raises(ValueError, match="choose it with --model"):
        vrnn.with_overrides(["model_name=mlp-sqair"])
    with pytest.raises(ValueError, match="needs a ModelConfig"):
        dataclasses.replace(vrnn, model_name="mlp-sqair")
