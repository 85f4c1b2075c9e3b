"""Streaming many-particle evaluation: equal to the all-at-once reduction, and to a direct model call."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp, softmax

from sqair_tf import interface
from sqair_tf import config as model_config_lib
from sqair_tf import model as model_lib
from sqair_tf import objectives
from evaluation import evaluator


def test_streaming_reduction_equals_the_reduction_of_all_particles_at_once():
    rng = np.random.default_rng(0)
    b, chunks, c = 3, 5, 4
    # Log weights spread over hundreds of nats, as SQAIR's are; one chunk dominates one sequence.
    log_w = rng.normal(6000.0, 200.0, size=(b, chunks * c))
    log_w[1, 13] += 900.0
    quantities = {key: rng.normal(size=(b, chunks * c)) for key in evaluator.WEIGHTED}
    reducer = evaluator.StreamingReducer(b)
    for j in range(chunks):
        part = slice(j * c, (j + 1) * c)
        reducer.add(dict({key: v[:, part] for key, v in quantities.items()}, log_weight=log_w[:, part]))
    got = reducer.result()
    w = softmax(log_w, axis=1)
    np.testing.assert_allclose(got["iwae"], logsumexp(log_w, axis=1) - np.log(chunks * c), rtol=1e-12)
    np.testing.assert_allclose(got["elbo"], log_w.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(got["ess"], 1.0 / np.sum(w ** 2, axis=1), rtol=1e-9)
    for key, value in quantities.items():
        np.testing.assert_allclose(got[key], np.sum(w * value, axis=1), rtol=1e-9, atol=1e-12)


def test_streaming_keeps_the_best_particle_over_all_chunks():
    reducer = evaluator.StreamingReducer(2)
    zeros = {key: np.zeros((2, 1)) for key in evaluator.WEIGHTED}
    for j, (lw, marker) in enumerate([([1.0, 5.0], 0), ([3.0, 2.0], 1), ([2.0, 4.0], 2)]):
        best = {"boxes": np.full((2, 3), marker), "best_log_weight": np.array(lw)}
        reducer.add(dict(zeros, log_weight=np.array(lw)[:, None]), best)
    np.testing.assert_array_equal(reducer.best["boxes"][:, 0], [1, 0])  # Sequence 0 best in chunk 1, 1 in chunk 0.


@pytest.fixture(scope="module")
def tiny_model():
    config = model_config_lib.preset("debug")
    model = model_lib.SQAIR(config)
    model(tf.zeros([1, 1, 32, 32, 1]), seed=tf.constant([0, 0]))
    return model


def test_chunked_evaluation_equals_the_direct_computation(debug_data, tiny_model):
    """K = 4 in 2 chunks of 2: the evaluator's numbers equal the reduction of the 2 direct model calls."""
    result = evaluator.evaluate(tiny_model, debug_data, "test", num_sequences=3, num_particles=4, chunk=2,
                                 batch_size=3, seed=5)
    ds, _, _ = evaluator.stream_batches(debug_data, "test", 3, 3)
    batch = next(iter(ds))
    log_w, counts_ok = [], []
    for j in range(2):
        seed = tf.random.experimental.stateless_fold_in(tf.constant([5, 0]), j)
        out = tiny_model(batch["frames"], seed=seed, num_particles=2)
        log_w.append(interface.sequence_log_weights(out, 2).numpy())
        inferred = np.transpose(out["num_objects"].numpy()).reshape(3, 2, -1)
        counts_ok.append(np.mean(inferred == batch["count"].numpy()[:, None, None], axis=-1))
    log_w, counts_ok = np.concatenate(log_w, 1), np.concatenate(counts_ok, 1)  # [3, 4]
    iwae = float(np.mean(objectives.iwae_bound(tf.constant(log_w, tf.float64)).numpy()))
    assert result["iwae"] == pytest.approx(iwae, rel=1e-5)  # float32 model, compiled vs eager op order.
    # A weighted fraction in [0, 1]: absolute tolerance. When the correct particles' weights are tiny (~1e-7 seen
    # with an untrained model), float32 log-weight noise moves the value by a relative 1e-4, an absolute 1e-11.
    assert result["counting_accuracy"] == pytest.approx(np.mean(np.sum(softmax(log_w, 1) * counts_ok, 1)), abs=1e-5)
    assert result["num_sequences"] == 3 and result["num_particles"] == 4


def test_one_chunk_equals_one_call_with_all_particles(debug_data, tiny_model):
    result = evaluator.evaluate(tiny_model, debug_data, "test", num_sequences=2, num_particles=3, chunk=3,
                                 batch_size=2, seed=1)
    batch = next(iter(evaluator.stream_batches(debug_data, "test", 2, 2)[0]))
    out = tiny_model(batch["frames"], seed=tf.random.experimental.stateless_fold_in(tf.constant([1, 0]), 0),
                     num_particles=3)
    lw = interface.sequence_log_weights(out, 3).numpy().astype(np.float64)
    # The log weight (here ~−2 nats) is a float32 sum of terms of ~10^3 nats that nearly cancel, so compiled and
    # eager calls (different fusion and reduction orders) agree to a few float32 ulps of those terms, not of it.
    terms = np.abs(out["log_likelihood"].numpy()).sum(axis=0).max()  # largest per-particle Σ_t |log p(x_t | z_t)|
    expected = np.mean(logsumexp(lw, 1) - np.log(3))
    assert result["iwae"] == pytest.approx(expected, abs=4 * float(np.finfo(np.float32).eps) * float(terms))
    with pytest.raises(ValueError, match="multiple of the chunk size"):
        evaluator.evaluate(tiny_model, debug_data, "test", 2, num_particles=5, chunk=2)


def test_tracking_sequences_skip_present_objects_that_draw_nothing():
    """An object kept while its digit is out of view draws nothing; it is not a detection (no false positive)."""
    from evaluation import tracking_metrics

    digit = [10.0, 40.0, 24.0, 50.0]  # [4] a digit at the right edge at t = 0, fully out of view at t = 1
    batch = {"frames": tf.zeros([1, 2, 50, 50, 1]),
             "boxes": tf.constant([[[digit], [[0.0, 0.0, 0.0, 0.0]]]]),  # [B=1, T=2, S=1, 4]
             "object_ids": tf.constant([[5]]), "visible": tf.constant([[[True], [False]]])}
    drawn = [11.0, 41.0, 24.0, 50.0]  # The object's drawn box at t = 0 (IoU 117 / 140 with the digit).
    best = {"boxes": np.array([[[drawn, [3.0, 3.0, 9.0, 9.0]], [[0.0, 0.0, 0.0, 0.0]] * 2]]),  # [1, 2, N=2, 4]
            "glimpse_boxes": np.zeros([1, 2, 2, 4]), "object_ids": np.array([[[1, -1], [1, -1]]]),
            "z_pres": np.array([[[1.0, 0.0], [1.0, 0.0]]])}  # Slot 1 is absent (its box must not count either).
    (sequence,) = evaluator.tracking_sequences(batch, best)
    np.testing.assert_array_equal(sequence["pred_present"], [[True, False], [False, False]])
    result = tracking_metrics.evaluate_tracking([sequence])
    assert (result["FP"], result["FN"], result["IDSW"]) == (0, 0, 0) and result["MOTA"] == 1.0
    # Counted as a detection, the empty box would have been one false positive.
    sequence["pred_present"] = best["z_pres"][0] > 0.5
    assert tracking_metrics.evaluate_tracking([sequence])["FP"] == 1
