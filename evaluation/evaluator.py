"""Evaluation of a trained model over a data split, with many particles in bounded memory (BUILD.md O6, paper Table 1).

For every sequence the evaluator draws K particles in chunks of `chunk` particles (chunk j uses the seed
fold_in(seed, j)), and reduces them *as they stream* in float64, never holding more than one chunk of model
activations:

    IWAE  = log (1/K) Σ_k e^{L_k}                 (running max m and running Σ e^{L_k − m})
    E_w[q] = Σ_k e^{L_k − m} q_k / Σ_k e^{L_k − m} (the importance-weighted mean of any per-particle quantity q)

where L_k is the sequence log weight of particle k. The streamed result equals the same reduction applied to all
K log weights at once (tested). Importance-weighted quantities (BUILD.md O6): the reconstruction term log p(x|z) and
KL = log q(z|x) − log p(z), both summed over the sequence's frames (Table 1's per-sequence scale), the paper's
counting accuracy and the visible-count accuracy. The tracks used for tracking metrics and the representation used
by the addition experiment are those of the highest-weight particle among all K.
"""

import sys
import time

import numpy as np
import tensorflow as tf

from data_pipelines import dataset as dataset_lib
from data_pipelines import records
from sqair_tf import glimpse
from sqair_tf import interface
from sqair_tf import metrics as metrics_lib
from sqair_tf import refinement

# Per-particle quantities reduced with importance weights ([B, c] per chunk); the object ones only for a model with
# objects (`interface.SequenceModel.has_objects`).
WEIGHTED = ("log_likelihood", "kl", "counting_accuracy", "visible_counting_accuracy", "num_objects")
OBJECT_WEIGHTED = ("counting_accuracy", "visible_counting_accuracy", "num_objects")
# Outputs of the best particle kept per sequence, batch-major [B, T, ...] (and, for a model with objects, `boxes`,
# drawn from its glimpses): the canvas, the model's representation and its tracks.
BEST = ("canvas",)
OBJECT_BEST = ("glimpse_boxes", "object_ids", "z_pres", "z_what", "z_where")


def weighted_keys(model):
    """The keys of WEIGHTED that `model` has."""
    return tuple(key for key in WEIGHTED if model.has_objects or key not in OBJECT_WEIGHTED)


def best_keys(model):
    """The outputs kept for the best particle: BEST, the model's representation and, with objects, OBJECT_BEST."""
    keys = BEST + tuple(model.representation_keys)
    if model.has_objects:
        keys += OBJECT_BEST
    return tuple(dict.fromkeys(keys))


def chunk_function(model, chunk, jit_compile=False, keep_box_inputs=False):
    """A compiled forward pass over `chunk` particles per sequence returning per-particle quantities [B, c] and the
    chunk's best particle ([B, T, ...] for the keys of BEST, plus its log weight `best_log_weight` [B]; with
    `keep_box_inputs`, also the model's `box_inputs`, to draw its boxes again another way)."""

    keys = best_keys(model)
    extra = tuple(key for key in model.box_inputs if key not in keys)  # Only to draw the best particle's boxes.

    def run(frames, count, visible_count, seed):
        outputs = model(frames, seed=seed, num_particles=chunk)
        log_weights = interface.sequence_log_weights(outputs, chunk)  # [B, c]
        log_p, log_q = interface.log_prior_and_posterior(outputs, chunk)  # [B, c]
        quantities = {
            "log_weight": log_weights,
            "log_likelihood": interface.per_sequence(outputs, "log_likelihood", chunk),
            "kl": log_q - log_p,
        }
        if model.has_objects:
            correct = lambda target: metrics_lib.count_correct(outputs["num_objects"], target, chunk)  # noqa: E731
            quantities.update({
                "counting_accuracy": correct(count),  # [B, c]
                "visible_counting_accuracy": correct(visible_count),  # [B, c]
                "num_objects": metrics_lib.per_particle_frame_mean(outputs["num_objects"], chunk),
            })
        drawn = ("boxes",) if model.has_objects else ()
        best = interface.best_particle_with_boxes(model, outputs, log_weights, frames, keys + drawn)
        if not keep_box_inputs:
            for key in extra:
                best.pop(key)
        best["best_log_weight"] = tf.reduce_max(log_weights, axis=1)
        return quantities, best

    return tf.function(run, jit_compile=jit_compile)


def refine_function(model, steps, motion_weight=0.0, jit_compile=False):
    """A compiled (frames [B, T, H, W, C], best) → the refined outputs of the best particle (`model.refine` with
    `motion_weight`) that it holds: z_what, z_where, canvas, glimpse_boxes, boxes and, if kept, glimpses."""

    def run(frames, best):
        inputs = ("z_what", "z_where", "z_pres") + (("object_ids",) if motion_weight else ())
        refined = model.refine(frames, {key: best[key] for key in inputs}, steps, motion_weight=motion_weight)
        keys = ("z_what", "z_where", "canvas", "glimpse_boxes", "boxes") + (("glimpses",) if "glimpses" in best else ())
        return {key: refined[key] for key in keys}

    return tf.function(run, jit_compile=jit_compile)


class StreamingReducer:
    """Reduces particles chunk by chunk: IWAE, ELBO, ESS and importance-weighted means, in float64."""

    def __init__(self, batch, keys=WEIGHTED):
        self.count = 0
        self.max = np.full([batch], -np.inf)
        self.sum_w = np.zeros([batch])  # Σ e^{L − max}
        self.sum_w2 = np.zeros([batch])  # Σ e^{2(L − max)}
        self.sum_l = np.zeros([batch])  # Σ L (for the ELBO)
        self.sums = {key: np.zeros([batch]) for key in keys}
        self.best = None
        self.best_log_weight = np.full([batch], -np.inf)

    def add(self, quantities, best=None):
        """quantities: dict of [B, c] arrays incl. `log_weight`; best: dict of [B, ...] arrays incl. `best_log_weight`."""
        log_w = np.asarray(quantities["log_weight"], np.float64)  # [B, c]
        new_max = np.maximum(self.max, log_w.max(axis=1))
        rescale = np.exp(np.where(np.isfinite(self.max), self.max - new_max, -np.inf))
        w = np.exp(log_w - new_max[:, None])  # [B, c]
        self.sum_w = self.sum_w * rescale + w.sum(axis=1)
        self.sum_w2 = self.sum_w2 * rescale ** 2 + (w ** 2).sum(axis=1)
        for key in self.sums:
            self.sums[key] = self.sums[key] * rescale + (w * np.asarray(quantities[key], np.float64)).sum(axis=1)
        self.sum_l += log_w.sum(axis=1)
        self.max = new_max
        self.count += log_w.shape[1]
        if best is not None:
            better = np.asarray(best["best_log_weight"], np.float64) > self.best_log_weight  # [B]
            if self.best is None:
                self.best = {key: np.array(value) for key, value in best.items()}
            else:
                for key, value in best.items():
                    value = np.asarray(value)
                    mask = better.reshape((-1,) + (1,) * (value.ndim - 1))
                    self.best[key] = np.where(mask, value, self.best[key])
            self.best_log_weight = np.maximum(self.best_log_weight, best["best_log_weight"])

    def result(self):
        """Per-sequence values [B]: iwae, elbo, ess and the importance-weighted means of the reducer's keys."""
        out = {"iwae": self.max + np.log(self.sum_w) - np.log(self.count), "elbo": self.sum_l / self.count,
               "ess": self.sum_w ** 2 / self.sum_w2}
        out.update({key: value / self.sum_w for key, value in self.sums.items()})
        return out


def stream_batches(data_dir, split, num_sequences, batch_size):
    """The first `num_sequences` sequences of a split in order, as batches; returns (dataset, count, manifest)."""
    config = dataset_lib.DataConfig(data_dir=data_dir, split=split, global_batch_size=batch_size, shuffle=False,
                                    repeat=False, drop_remainder=False)
    ds, manifest = dataset_lib.build_dataset(config)
    num_sequences = manifest["num_sequences"] if num_sequences is None else min(num_sequences,
                                                                                  manifest["num_sequences"])
    return ds.unbatch().take(num_sequences).batch(batch_size), num_sequences, manifest


def evaluate(model, data_dir, split="test", num_sequences=None, num_particles=1000, chunk=50, batch_size=10,
             seed=0, jit_compile=False, keep_best=False, progress=False, on_batch=None, keep_box_inputs=False,
             refine_steps=0, motion_weight=None):
    """Evaluates `model` on a split with K = `num_particles` particles streamed in chunks.

    Args:
      model: an `interface.SequenceModel`.
      data_dir, split: the data; `num_sequences`: the first this many sequences (None: all).
      num_particles: K; must be a multiple of `chunk` (or smaller than it, then one chunk of K).
      chunk: particles per forward pass (memory ∝ batch_size × chunk).
      batch_size: sequences per forward pass.
      seed: chunk j of batch i samples with seed fold_in([seed, i], j).
      keep_best: also return the best particle's outputs of every sequence (tracking, figures, addition).
      on_batch: optional callback(batch, per_sequence_result, best) after each batch (e.g. tracking metrics).
      keep_box_inputs: `best` also holds the model's `box_inputs` (`chunk_function`).
      refine_steps: with a model with objects, refine the best particle's latents of each sequence by this many
        steps on its frames (`SequenceModel.refine`, BUILD.md "Refined boxes") before its boxes, canvas and
        tracks are read; the particle-averaged quantities (likelihood, KL, counts) are those of the amortised
        posterior.
      motion_weight: λ of the refinement's smooth-motion term, which refines a sequence's frames together
        (`SequenceModel.refine`; 0: each frame alone; None: the package's `refinement.MOTION_WEIGHT`).

    Returns:
      dict: per-sequence means over the split of iwae, elbo, ess, log_likelihood, kl and, for a model with
      objects, counting_accuracy, visible_counting_accuracy, num_objects; plus num_sequences, num_particles, seconds, and the time and size of
      the first batch (first_batch_seconds, first_batch_sequences; it includes tracing and compilation).
    """
    chunk = min(chunk, num_particles)
    if num_particles % chunk:
        raise ValueError(f"num_particles ({num_particles}) must be a multiple of the chunk size ({chunk})")
    ds, total, manifest = stream_batches(data_dir, split, num_sequences, batch_size)
    records.verify_checksums(manifest)
    run = chunk_function(model, chunk, jit_compile, keep_box_inputs)
    motion_weight = refinement.effective_motion_weight(refine_steps, motion_weight)
    refine = None
    if refine_steps and model.has_objects:
        refine = refine_function(model, refine_steps, motion_weight, jit_compile)
    start = time.perf_counter()
    sums, seen = {}, 0
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="seq", desc=f"eval {split} K={num_particles}", file=sys.stderr)
    for i, batch in enumerate(dataset_lib.checked_batches(ds, manifest)):
        reducer = StreamingReducer(int(batch["frames"].shape[0]), weighted_keys(model))
        for j in range(num_particles // chunk):
            seed_ij = tf.random.experimental.stateless_fold_in(tf.constant([seed, i], tf.int32), j)
            quantities, best = run(batch["frames"], batch["count"], batch["visible_count"], seed_ij)
            quantities = {key: value.numpy() for key, value in quantities.items()}
            best = {key: value.numpy() for key, value in best.items()} if (keep_best or on_batch) else None
            reducer.add(quantities, best)
        if refine is not None and reducer.best is not None:
            reducer.best.update((key, value.numpy()) for key, value in refine(batch["frames"], reducer.best).items())
        result = reducer.result()
        for key, value in result.items():
            sums[key] = sums.get(key, 0.0) + float(np.sum(value))
        if on_batch is not None:
            on_batch(batch, result, reducer.best)
        n = int(batch["frames"].shape[0])
        seen += n
        if i == 0:
            first_batch = (time.perf_counter() - start, n)  # Includes tracing (and XLA compilation).
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    out = {key: value / max(seen, 1) for key, value in sums.items()}
    out.update(num_sequences=seen, num_particles=num_particles, seconds=time.perf_counter() - start)
    if seen:
        out.update(first_batch_seconds=first_batch[0], first_batch_sequences=first_batch[1])
    return out


def tracking_sequences(batch, best):
    """Per-sequence inputs of `tracking_metrics` (ground truth and the best particle's tracks) of one evaluated
    batch: what `evaluate`'s `on_batch` callback receives.

    Both sides hold what is visible: the ground truth its visible digits, the predictions the present objects that
    draw something (`glimpse.shows_something`); an object kept while its digit is out of view is not a detection.
    """
    boxes = np.asarray(best["boxes"])  # [B, T, N, 4]
    detected = (np.asarray(best["z_pres"]) > 0.5) & glimpse.shows_something(boxes)  # [B, T, N]
    return [{"gt_boxes": batch["boxes"][b].numpy(), "gt_ids": batch["object_ids"][b].numpy(),
             "gt_present": batch["visible"][b].numpy(), "pred_boxes": boxes[b],
             "pred_glimpse_boxes": np.asarray(best["glimpse_boxes"][b]),
             "pred_ids": np.asarray(best["object_ids"][b]), "pred_present": detected[b]}
            for b in range(int(batch["frames"].shape[0]))]


def evaluate_split(model, data_dir, split="test", num_sequences=1000, num_particles=5, seed=0, batch_size=50,
                   progress=False):
    """Training-time held-out metrics: `evaluate` with the training particle count in a single chunk."""
    return evaluate(model, data_dir, split, num_sequences, num_particles, chunk=num_particles,
                    batch_size=batch_size, seed=seed, progress=progress)
