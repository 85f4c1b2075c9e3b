"""MLP-VRNN (`sqair_tf/vrnn.py`): its recurrence against a float64 NumPy reference, its size against MLP-SQAIR's,
its training objective (plain IWAE), and train → eval → export end to end with every object metric n/a."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from sqair_tf import config as model_config_lib
from sqair_tf import interface
from sqair_tf import models
from sqair_tf import objectives
from trainers import config as config_lib
from trainers import trainer as trainer_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def _np(layer, x):
    return layer(tf.constant(x, tf.float32)).numpy().astype(np.float64)


def _gaussian(params, min_std):
    loc, pre = np.split(params, 2, axis=-1)
    return loc, np.logaddexp(0.0, pre) + min_std  # softplus


def test_two_steps_match_a_numpy_reference():
    """Recomputes frames 0 and 1 from the sampled z with the model's own sublayers and float64 log densities:
    the prior, the posterior, the decoder, the likelihood and the GRU state that links the two steps."""
    cfg = models.preset("mlp-vrnn", "debug")
    rng = np.random.default_rng(0)
    mean_image = rng.uniform(0, 0.2, cfg.image_shape).astype(np.float32)
    model = models.build("mlp-vrnn", cfg, mean_image=mean_image)
    # The GRU's trainable initial state starts at zero; move it so the test sees it being used.
    model.rnn.initial_state_layer.state.assign(rng.normal(0, 0.5, cfg.hidden_size).astype(np.float32))
    b, k, t_len = 2, 3, 2
    frames = rng.uniform(0, 1, (b, t_len) + cfg.image_shape).astype(np.float32)
    out = {key: v.numpy().astype(np.float64) for key, v in
           model(frames, seed=tf.constant([9, 9]), num_particles=k).items()}
    h = np.tile(model.rnn.initial_state_layer.state.numpy()[None], (b * k, 1)).astype(np.float64)
    for t in range(t_len):
        x = np.repeat(frames[:, t].reshape(b, -1), k, axis=0).astype(np.float64)  # [BK, P]
        phi_x = _np(model.frame_features, x)
        prior_loc, prior_std = _gaussian(_np(model.prior_net, h), cfg.min_std)
        loc, std = _gaussian(_np(model.posterior_net, np.concatenate([phi_x, h], -1)), cfg.min_std)
        z = out["z"][t]  # [BK, Z]
        # z is a reparameterised draw from q: standardised, it is a plausible N(0, 1) sample.
        assert np.abs((z - loc) / std).max() < 6
        np.testing.assert_allclose(out["log_q_continuous"][t], stats.norm.logpdf(z, loc, std).sum(-1),
                                   rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(out["log_p_continuous"][t], stats.norm.logpdf(z, prior_loc, prior_std).sum(-1),
                                   rtol=1e-4, atol=1e-3)
        phi_z = _np(model.latent_features, z)
        canvas = mean_image.reshape(-1) + _np(model.decoder, np.concatenate([phi_z, h], -1))
        np.testing.assert_allclose(out["canvas"][t].reshape(b * k, -1), canvas, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out["log_likelihood"][t],
                                   stats.norm.logpdf(x, canvas, cfg.output_std).sum(-1), rtol=1e-4, atol=1e-2)
        _, h = model.rnn(tf.constant(np.concatenate([phi_x, phi_z], -1), tf.float32), tf.constant(h, tf.float32))
        h = h.numpy().astype(np.float64)


@pytest.mark.parametrize("vrnn_name, sqair_name, sqair_count, vrnn_count", [
    ("mlp-vrnn", "mlp-sqair", 2_951_522, 2_944_790),
    ("conv-vrnn", "conv-sqair", 3_425_590, 3_431_224),
])
def test_paper_size_matches_sqair_and_shares_its_likelihood(vrnn_name, sqair_name, sqair_count, vrnn_count):
    vrnn = models.build(vrnn_name, models.preset(vrnn_name))
    sqair = models.build(sqair_name, models.preset(sqair_name))
    for model in (vrnn, sqair):
        model(tf.zeros([1, 1, 50, 50, 1]), seed=tf.constant([0, 0]))
    count = lambda m: sum(int(np.prod(v.shape)) for v in m.trainable_variables)  # noqa: E731
    assert count(sqair) == sqair_count and count(vrnn) == vrnn_count
    assert abs(count(vrnn) / count(sqair) - 1) < 0.005
    paper = model_config_lib.ModelConfig()
    assert vrnn.config.z_dim == paper.num_slots * (paper.z_what_dim + 4 + 1)  # SQAIR's largest latent per frame.
    assert vrnn.config.output_std == paper.output_std and not vrnn.has_objects and not vrnn.has_discrete_latents


def test_training_loss_is_the_iwae_bound_without_a_score_term():
    config = config_lib.preset("debug", model="mlp-vrnn")
    model = models.build("mlp-vrnn", config.model)
    frames = tf.random.stateless_uniform([4, 3, 32, 32, 1], seed=[1, 1])
    seed = tf.constant([2, 2])
    loss, grads, sums = trainer_lib.loss_and_grads(model, config, frames, tf.zeros([4], tf.int32), seed)
    log_weights = interface.sequence_log_weights(model(frames, seed=seed, num_particles=config.num_particles),
                                                 config.num_particles)
    iwae = objectives.iwae_bound(log_weights).numpy()
    np.testing.assert_allclose(float(loss), -iwae.sum() / 3 / config.batch_size, rtol=1e-5)
    assert set(sums) == set(trainer_lib.step_metrics(model)) and "counting_accuracy" not in sums
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)


@pytest.mark.slow
def test_train_eval_export_end_to_end(debug_data, tmp_path):
    """sqair-train --model mlp-vrnn, then sqair-eval (object metrics n/a) and sqair-export (`reconstruct`)."""
    run = lambda module, *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", module, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    workdir = str(tmp_path / "vrnn")
    done = run("trainers.train", "--workdir", workdir, "--model", "mlp-vrnn", "--preset", "debug", "--data",
               debug_data, "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done at step 8: mlp-vrnn held-out IWAE" in done.stdout and "counting" not in done.stdout
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["model_name"] == "mlp-vrnn"

    refused = run("trainers.train", "--workdir", workdir, "--model", "mlp-sqair", "--no-progress")
    assert refused.returncode == 2 and "model_name: 'mlp-vrnn' in the run, 'mlp-sqair' requested" in refused.stderr

    out = str(tmp_path / "eval")
    ev = run("evaluation.cli", "--workdir", workdir, "--k", "2", "--chunk", "2", "--num", "4", "--no-jit",
             "--addition-train", "8", "--figures", "--out", out, "--no-progress")
    assert ev.returncode == 0, ev.stderr[-2000:]
    with open(os.path.join(out, "test-step8-k2.json")) as f:
        report = json.load(f)
    assert report["model"] == "mlp-vrnn" and report["tracking"] is None and report["counting_accuracy"] is None
    assert np.isfinite(report["log_px_iwae"]) and 0 <= report["addition"]["test_accuracy"] <= 1
    assert "| MOTA | n/a | mlp-vrnn has no objects |" in ev.stdout
    assert os.path.getsize(report["figures"]["reconstruction"]) > 0 and "glimpses" not in report["figures"]

    ex = run("serving.export", "--workdir", workdir, "--out", str(tmp_path / "export"), "--k", "2")
    assert ex.returncode == 0, ex.stderr[-2000:]
    loaded = tf.saved_model.load(os.path.join(str(tmp_path / "export"), "8"))
    assert set(loaded.signatures) == {"reconstruct", "generate", "sample", "serving_default"}
    frames = tf.random.stateless_uniform([2, 3, 32, 32, 1], seed=[0, 1])
    answer = loaded.signatures["reconstruct"](frames=frames)
    assert answer["reconstruction"].shape == (2, 3, 32, 32, 1) and answer["log_weight"].shape == (2,)
    sampled = loaded.signatures["sample"](num_sequences=tf.constant(2), num_steps=tf.constant(3),
                                          seed=tf.constant([1, 2]))
    assert set(sampled) == {"frames"} and sampled["frames"].shape == (2, 3, 32, 32, 1)
