"""The interface every model of this package implements, and the functions that read its outputs.

The trainer, the evaluator, the exporter and the figures hold a `SequenceModel` and never ask which one: they read
the outputs named here and the model's capability flags. BUILD.md "Models" lists the models and what each supports.

A forward pass `model(frames, seed=seed, num_particles=K)` takes batch-major frames [B, T, H, W, C] in [0, 1] and
returns a dict of time-major tensors with the K particles of each sequence folded into the batch as b·K + k:

  always (`CORE_OUTPUTS`):
    canvas            [T, BK, H, W, C]  reconstruction: the mean of p(x_t | z_≤t)
    log_likelihood    [T, BK]  log p(x_t | z), summed over pixels
    log_p_continuous  [T, BK]  log p of the reparameterised latents
    log_q_continuous  [T, BK]  log q of the reparameterised latents
    log_weight        [T, BK]  log w_t = log p(x_t | z) + log p(z_t | ·) − log q(z_t | ·)
  models with discrete latents (`has_discrete_latents`, `DISCRETE_OUTPUTS`), scored by VIMCO:
    log_p_discrete    [T, BK]
    log_q_discrete    [T, BK]
  models with objects (`has_objects`, `OBJECT_OUTPUTS`; N object slots, D appearance size):
    z_pres [T, BK, N], num_objects int32 [T, BK], object_ids int32 [T, BK, N] (−1 for empty slots),
    boxes [T, BK, N, 4] (`drawn_boxes`), glimpse_boxes [T, BK, N, 4], z_what [T, BK, N, D], z_where [T, BK, N, 4]

A model without discrete latents is trained with the plain IWAE bound (paper §3; Burda et al. 2016); a model without
objects reports "n/a" for every object metric, as Table 1 of the paper does for VRNN.

The sequence log weight of particle k is L_k = Σ_t log_weight_t (`sequence_log_weights`); the discrete
log-probability VIMCO scores is D_k = Σ_t log_q_discrete_t (`discrete_log_prob`).
"""

import keras
import tensorflow as tf

CORE_OUTPUTS = ("canvas", "log_likelihood", "log_p_continuous", "log_q_continuous", "log_weight")
DISCRETE_OUTPUTS = ("log_p_discrete", "log_q_discrete")
OBJECT_OUTPUTS = ("z_pres", "num_objects", "object_ids", "boxes", "glimpse_boxes", "z_what", "z_where")


class SequenceModel(keras.Model):
    """Base class of the models: the capability flags and the methods the rest of the package calls.

    Class attributes:
      has_objects: the forward pass returns `OBJECT_OUTPUTS`, and `drawn_boxes` and `refine` work.
      has_discrete_latents: the forward pass returns `DISCRETE_OUTPUTS` (trained with VIMCO, else plain IWAE).
      box_inputs: the output keys `drawn_boxes` reads; an evaluator that keeps only the best particle keeps these
        too, so it can compute that particle's boxes without rendering every particle's.
      representation_keys: the output keys `frame_representation` reads.

    Attribute:
      unroll_time: trace the time loop step by step instead of a `tf.while_loop` when T is static (the same
        computation; a faster XLA step for a longer compile, `model.unroll`). Set it before the first trace.

    Subclasses set `self.config`, a frozen config with at least `image_shape` (H, W, C).
    """

    has_objects = False
    has_discrete_latents = False
    box_inputs = ()
    representation_keys = ()
    unroll_time = False

    def build(self, input_shape=None):
        """Sublayers build themselves on the first call (their shapes depend on the particle count)."""
        self.built = True

    def _check_frames(self, frames):
        """`frames` as a float32 tensor, or a ValueError naming the shape [B, T, H, W, C] the model expects."""
        frames = tf.convert_to_tensor(frames, tf.float32)
        if frames.shape.rank != 5 or tuple(frames.shape[2:]) != self.config.image_shape:
            raise ValueError(f"frames must have shape [B, T, {', '.join(map(str, self.config.image_shape))}], "
                             f"got {frames.shape}")
        return frames

    def call(self, frames, seed, num_particles=1, count_penalty=None):
        """Inference with K particles; returns the time-major outputs of the module docstring.

        `count_penalty` replaces the config's λ, the cost per discovered object in the log weight, for this call
        (a Python float; None keeps the config's). The trainer passes 0 before `TrainConfig.count_penalty_start`.
        Models without a count ignore it."""
        raise NotImplementedError

    def generate(self, frames, num_steps, seed):
        """Conditional generation (paper Fig. 6): infers from the observed frames [B, T_obs, H, W, C], then
        imagines `num_steps` frames from the prior. Returns (observed, generated): the observed outputs as `call`
        with K = 1, and the generated ones with at least `canvas` [num_steps, B, H, W, C] (and the object outputs
        `z_pres`, `boxes`, `object_ids` for models with objects)."""
        raise NotImplementedError

    def sample(self, num_sequences, num_steps, seed):
        """Unconditional samples from the prior (paper Fig. 5): outputs as `generate`'s `generated`."""
        raise NotImplementedError

    def drawn_boxes(self, outputs, frames=None):
        """The drawn-pixel box of every slot [..., N, 4] from the keys `box_inputs` of `outputs` (any leading axes,
        e.g. the best particle's batch-major [B, T, ...]); with the observed `frames` [..., H, W, C] the box of the
        frame's pixels each slot explains (BUILD.md "Boxes"). Only for models with objects."""
        raise NotImplementedError(f"{type(self).__name__} has no objects, so no boxes")

    def refine(self, frames, outputs, steps, motion_weight=0.0):
        """`outputs` (batch-major, aligned with `frames` [..., H, W, C]) with the objects' latents refined on the
        frames by `steps` gradient steps, and the boxes and canvas drawn from them (BUILD.md "Refined boxes"); with
        `motion_weight` λ > 0, each sequence's frames together, each object's centre paying λ for its
        acceleration (outputs [B, T, ...] with `object_ids`). Only for models with objects."""
        raise NotImplementedError(f"{type(self).__name__} has no objects to refine")

    def frame_representation(self, outputs):
        """The per-frame representation of batch-major outputs [B, T, ...] as [B, T, R] (the addition experiment,
        paper §4.1). `representation_keys` names the outputs it reads."""
        raise NotImplementedError


def sequence_log_weights(outputs, num_particles):
    """Sums the per-step log weights over time and splits the particles: [T, B·K] → [B, K]."""
    return tf.reshape(tf.reduce_sum(outputs["log_weight"], axis=0), [-1, num_particles])


def per_sequence(outputs, key, num_particles):
    """Σ over time of a per-step scalar output, per particle: [T, B·K] → [B, K]."""
    return tf.reshape(tf.reduce_sum(outputs[key], axis=0), [-1, num_particles])


def discrete_log_prob(outputs, num_particles):
    """D [B, K]: log q of each particle's discrete trajectory (what VIMCO scores), or None without discrete latents."""
    if "log_q_discrete" not in outputs:
        return None
    return per_sequence(outputs, "log_q_discrete", num_particles)


def log_prior_and_posterior(outputs, num_particles):
    """(log p(z), log q(z)) per particle [B, K], summed over time and over continuous and discrete latents."""
    log_p = per_sequence(outputs, "log_p_continuous", num_particles)
    log_q = per_sequence(outputs, "log_q_continuous", num_particles)
    if "log_q_discrete" in outputs:
        log_p += per_sequence(outputs, "log_p_discrete", num_particles)
        log_q += per_sequence(outputs, "log_q_discrete", num_particles)
    return log_p, log_q


def best_particle(outputs, log_weights):
    """Selects each sequence's highest-weight particle and returns batch-major tensors.

    Args:
      outputs: the model's time-major dict, tensors [T, B·K, ...] (or [T, B·K]).
      log_weights: [B, K] sequence log weights.

    Returns:
      dict with the same keys, each [B, T, ...], from particle argmax_k L_{b,k} of every sequence b.
    """
    rows = best_particle_rows(log_weights)  # [B]
    selected = {}
    for key, value in outputs.items():
        picked = tf.gather(value, rows, axis=1)  # [T, B, ...]
        perm = [1, 0] + list(range(2, picked.shape.rank))
        selected[key] = tf.transpose(picked, perm)  # [B, T, ...]
    return selected


def best_particle_with_boxes(model, outputs, log_weights, frames, keys):
    """`best_particle` of `outputs`' `keys`, with `boxes` among them drawn for the best particle alone.

    The forward pass draws `boxes` for all B·K particle rows; where only each sequence's best particle is wanted,
    drawing them after the choice renders and sums K times fewer rows (inside a compiled function the forward pass's
    own boxes are then pruned, as nothing reads them). A row's boxes depend only on its latents and its frame, so
    they are the boxes the forward pass would have given that row.

    Args:
      model: a `SequenceModel`.
      outputs: its time-major forward-pass outputs [T, B·K, ...].
      log_weights: [B, K] sequence log weights.
      frames: [B, T, H, W, C] the observed frames the outputs were inferred from.
      keys: the outputs to keep; with `boxes` (and objects), the model's `box_inputs` are kept as well.

    Returns:
      dict [B, T, ...] of the kept keys (and `box_inputs`), from particle argmax_k L_{b,k} of every sequence b.
    """
    keys = tuple(keys)
    if not (model.has_objects and "boxes" in keys):
        return best_particle({key: outputs[key] for key in keys}, log_weights)
    read = tuple(dict.fromkeys(key for key in keys + tuple(model.box_inputs) if key != "boxes"))
    best = best_particle({key: outputs[key] for key in read}, log_weights)
    best["boxes"] = model.drawn_boxes(best, frames)  # [B, T, N, 4]
    return best


def best_particle_rows(log_weights):
    """int32 [B]: the row b·K + argmax_k L_{b,k} of each sequence's highest-weight particle (log_weights [B, K])."""
    k = tf.shape(log_weights)[1]
    return tf.range(tf.shape(log_weights)[0]) * k + tf.argmax(log_weights, axis=1, output_type=tf.int32)


def required_outputs(model):
    """The output keys `model`'s forward pass must return, given its capability flags."""
    keys = CORE_OUTPUTS
    if model.has_discrete_latents:
        keys += DISCRETE_OUTPUTS
    if model.has_objects:
        keys += OBJECT_OUTPUTS
    return keys
