"""SQAIR over whole sequences: inference with K particles, conditional generation and prior samples.

The model's public boundary is batch-major ([B, T, H, W, C] frames); inside, everything is time-major with the K
particles of each sequence folded into the batch as b·K + k (BUILD.md). One `tf.while_loop` runs the time steps;
its per-step outputs are stacked with TensorArrays keyed by name (no positional lists), so adding an output means
adding one entry to `timestep.INFERENCE_OUTPUTS`. What no step reads (the decoded glimpses, the canvas, the
likelihood and the log weight) is computed once after the loop (`SQAIRCell.render`, `SQAIRCell.weigh`).

Sampling is driven by explicit int32 [2] stateless seeds: the seed of step t is `stateless_fold_in(seed, t)`, so a
forward pass is a deterministic function of (weights, frames, seed).
"""

import tensorflow as tf

from sqair_tf import glimpse
from sqair_tf import interface
from sqair_tf import refinement
from sqair_tf import spatial_transformer
from sqair_tf import timestep


def unroll(step_fn, initial_state, num_steps, output_dtypes, python_loop=False):
    """Runs `step_fn(t, state) -> (outputs, new_state)` for t = 0..num_steps−1 in a `tf.while_loop` (or unrolled).

    Args:
      step_fn: per-step function; `outputs` is a dict with (at least) the keys of `output_dtypes`.
      initial_state: any nest of tensors with fixed shapes.
      num_steps: int or scalar int32 tensor. A static value also bounds the loop (`maximum_iterations`), which
        XLA needs to differentiate through it.
      output_dtypes: dict key → dtype of the outputs to stack.
      python_loop: when `num_steps` is static, trace the T steps one after another instead (t is still a scalar
        int32 tensor, so the computation is the same). Under XLA the step is about 11 % faster (no loop-carried
        stacks to slice and update) and compiles 3–4× longer at T = 10 (BUILD.md "Unrolled time loop").

    Returns:
      (outputs, final_state): outputs maps each key to a time-major tensor [T, ...].
    """
    static_steps = tf.get_static_value(num_steps)
    if python_loop and static_steps is not None:
        state, stacks = initial_state, {key: [] for key in output_dtypes}
        for t in range(int(static_steps)):
            outputs, state = step_fn(tf.constant(t), state)
            for key, stack in stacks.items():
                stack.append(outputs[key])
        return {key: tf.stack(stack) for key, stack in stacks.items()}, state
    arrays = {key: tf.TensorArray(dtype, size=num_steps) for key, dtype in output_dtypes.items()}

    def body(t, state, arrays):
        outputs, new_state = step_fn(t, state)
        arrays = {key: arrays[key].write(t, outputs[key]) for key in arrays}
        return t + 1, new_state, arrays

    _, final_state, arrays = tf.while_loop(
        lambda t, state, arrays: t < num_steps, body, (tf.constant(0), initial_state, arrays),
        maximum_iterations=None if static_steps is None else int(static_steps))
    return {key: array.stack() for key, array in arrays.items()}, final_state


def time_major_inputs(discovery, frames, num_particles):
    """What the time loop of a glimpse model reads, from batch-major frames [B, T, H, W, C].

    The K particles of a sequence share its frames, which are never tiled: the step reads frame b for the particle
    rows b·K … b·K + K − 1, and DISC's image features (a function of the frame alone) are computed once per frame,
    before the time loop.

    Returns:
      (frames_tm [T, B, H, W, C], features_tm [T, BK, F], num_steps T, batch BK), T and BK static when known (XLA
      needs a static bound to differentiate through the loop).
    """
    frames_tm = tf.transpose(frames, [1, 0, 2, 3, 4])  # [T, B, H, W, C]
    num_steps = frames.shape[1] if frames.shape[1] is not None else tf.shape(frames)[1]
    features = discovery.encode_images(frames)  # [B, T, F]
    features_tm = tf.transpose(tf.repeat(features, num_particles, axis=0), [1, 0, 2])  # [T, BK, F]
    batch = (frames.shape[0] * num_particles if frames.shape[0] is not None
             else tf.shape(frames)[0] * num_particles)
    return frames_tm, features_tm, num_steps, batch


class GlimpseObjectModel(interface.SequenceModel):
    """What the models whose objects are decoded glimpses (MLP-SQAIR, MLP-AIR) share: their flags, their drawn-pixel
    boxes, their refinement and their per-frame representation. Subclasses set `self.config` (a `ModelConfig`) and
    `self.cell`, whose `decoder` and `renderer` `refine` uses."""

    has_objects = True
    has_discrete_latents = True
    box_inputs = ("glimpses", "z_where", "z_pres")
    representation_keys = ("z_what", "z_pres")

    def drawn_boxes(self, outputs, frames=None, frame_repeats=1):
        """`glimpse.drawn_boxes` of the slots' decoded glimpses: [..., N, 4], zeros for absent slots; with the
        observed `frames` [..., H, W, C] (leading axes those of `outputs`' z_pres, or one frame per
        `frame_repeats` entries of the last), the pixels each explains."""
        return glimpse.drawn_boxes(outputs["glimpses"], outputs["z_where"], outputs["z_pres"],
                                   self.config.image_shape[:2], shift_range=self.config.where_shift_range,
                                   frames=frames, frame_repeats=frame_repeats)

    def _with_drawn_boxes(self, outputs, frames_tm=None, num_particles=1):
        """Adds `boxes` to time-major forward-pass outputs: the drawn-pixel box of every slot [T, BK, N, 4]; with
        the observed frames [T, B, H, W, C], those of the pixels each slot explains (`glimpse.drawn_boxes`; row
        b·K + k reads frame b). Without frames (imagined steps), the pixels each slot draws."""
        outputs["boxes"] = self.drawn_boxes(outputs, frames_tm, frame_repeats=num_particles)
        return outputs

    def refine(self, frames, outputs, steps=refinement.STEPS, learning_rate=refinement.LEARNING_RATE,
               motion_weight=0.0):
        """`outputs` with the present objects' latents refined on `frames` (`refinement.refine_objects`), and the
        glimpses, canvas and both boxes drawn from them; the rest (presence, ids, counts, log weights) is kept.

        Args:
          frames: [..., H, W, C] aligned with `outputs`' leading axes (e.g. one particle per sequence, [B, T]).
          outputs: a dict with at least z_what [..., N, D], z_where [..., N, 4] and z_pres [..., N] (and
            object_ids [B, T, N] with a `motion_weight`).
          motion_weight: λ per pixel² of the glimpse centres' acceleration (`refinement.acceleration_penalty`);
            0 refines each frame alone.
        """
        cfg = self.config
        height, width = cfg.image_shape[:2]

        def centres(z_where):  # [..., N, 2] glimpse centres in pixels (x, y)
            _, shift = spatial_transformer.where_to_transform(z_where, cfg.where_shift_range)
            return shift * tf.constant([0.5 * (width - 1), 0.5 * (height - 1)], shift.dtype)

        refined = refinement.refine_objects(frames, outputs["z_what"], outputs["z_where"], outputs["z_pres"],
                                            self.cell.decoder, self.cell.renderer, steps, learning_rate,
                                            motion_weight, outputs.get("object_ids"), centres)
        outputs = dict(outputs, **refined)
        outputs["canvas"] = self.cell.renderer(outputs["glimpses"], outputs["z_where"], outputs["z_pres"])
        outputs["glimpse_boxes"] = spatial_transformer.boxes_from_where(
            outputs["z_where"], cfg.image_shape[:2], cfg.where_shift_range)
        outputs["boxes"] = self.drawn_boxes(outputs, frames)
        return outputs

    def frame_representation(self, outputs):
        """[B, T, N·(D + 1)]: the N slots in slot order, each [z_pres · z_what, z_pres] (zeros for an empty slot).

        Slots are ordered as the model orders them (present objects first, propagated ones in their previous
        order, BUILD.md O2.10), so the concatenation is stable over time.
        """
        z_what = tf.convert_to_tensor(outputs["z_what"], tf.float32)  # [B, T, N, D]
        z_pres = tf.convert_to_tensor(outputs["z_pres"], tf.float32)[..., None]  # [B, T, N, 1]
        slots = tf.concat([z_pres * z_what, z_pres], axis=-1)  # [B, T, N, D + 1]
        return tf.reshape(slots, tf.concat([tf.shape(slots)[:2], [-1]], axis=0))


class SQAIR(GlimpseObjectModel):
    """MLP-SQAIR (Kosiorek et al. 2018) as a Keras model: a `SequenceModel` with objects and discrete latents.

    Args:
      config: a `sqair_tf.config.ModelConfig`.
      mean_image: optional [H, W, C] initial value of the learnable mean image (the per-pixel mean of the
        training frames, stored as `mean_frame` in a data manifest); zeros if None.

    Call: `model(frames, seed=seed, num_particles=K)` with frames float32 [B, T, H, W, C] in [0, 1] and seed
    int32 [2]. Returns a dict of time-major tensors, particles folded into the batch (index b·K + k):

      canvas            [T, BK, H, W, C]  reconstruction: the mean of p(x_t | z_t)
      glimpses          [T, BK, N, G, G, C] decoded glimpse of each slot (before rendering)
      log_likelihood    [T, BK]  log p(x_t | z_t), summed over pixels
      log_p_continuous  [T, BK]  log p of z_what, z_where (propagation prior + DISC priors), presence-masked
      log_p_discrete    [T, BK]  log p of presence (propagation prior) + log p(n) of the DISC count
      log_q_continuous  [T, BK]  log q of z_what, z_where, presence-masked (BUILD.md O7.2)
      log_q_discrete    [T, BK]  log q of PROP presences + log q(n) of DISC (VIMCO's discrete log-prob)
      log_weight        [T, BK]  log w_t = log_likelihood + log p − log q
      z_what [T, BK, N, D], z_where [T, BK, N, 4], z_pres [T, BK, N], presence_prob [T, BK, N]
      object_ids        int32 [T, BK, N]  (−1 for empty slots)
      num_objects       int32 [T, BK]     present slots (the inferred count)
      boxes             [T, BK, N, 4]     (y_min, x_min, y_max, x_max) in pixels, max exclusive: the box of
                                          the frame's pixels the object explains (`glimpse.drawn_boxes`; on
                                          imagined frames the pixels it draws), zeros if absent
      glimpse_boxes     [T, BK, N, 4]     the glimpse's footprint (`spatial_transformer.boxes_from_where`)

    `boxes` is computed after the time loop from the stacked glimpses, so a caller that does not use it (the
    training loss) does not pay for it inside a compiled function.
    """

    def __init__(self, config, mean_image=None, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.cell = timestep.SQAIRCell(config, mean_image, name="sqair_cell")

    def call(self, frames, seed, num_particles=1, count_penalty=None):
        frames = self._check_frames(frames)
        outputs, _ = self._infer(frames, seed, num_particles, count_penalty=count_penalty)
        return outputs

    def _infer(self, frames, seed, num_particles, state=None, first_step=0, count_penalty=None):
        frames_tm, features_tm, num_steps, batch = time_major_inputs(self.cell.discovery, frames, num_particles)
        if state is None:
            state = self.cell.initial_state(batch)

        def step(t, state):
            seed_t = tf.random.experimental.stateless_fold_in(seed, first_step + t)
            return self.cell.inference_step(frames_tm[t], state, first_step + t, seed_t,
                                            image_features=features_tm[t], count_penalty=count_penalty)

        outputs, state = unroll(step, state, num_steps, timestep.STEP_INFERENCE_OUTPUTS, self.unroll_time)
        outputs = self.cell.weigh(self.cell.render(outputs), frames_tm)  # All T·BK rows at once, after the loop.
        return self._with_drawn_boxes(outputs, frames_tm, num_particles), state

    def initial_state(self, num_sequences):
        """The object state before the first frame of `num_sequences` streams (no objects): a `timestep.ObjectState`
        with leading axis B, what `track_window` takes for a stream's first window."""
        return self.cell.initial_state(num_sequences)

    def track_window(self, frames, state, first_step, seed, num_particles=1):
        """Inference over the next window of endless streams, from the object state the last window ended with.

        A video is longer than any training sequence; restarting inference on every window would forget every
        object and give it a new id. Instead each window starts from the previous window's final `ObjectState`, so
        objects keep their ids and their propagation (paper §3.1) continues across windows. The K particles of a
        window start from the same state, and the state handed to the next window is that of the window's
        highest-weight particle (an argmax resampling step; with K = 1 a run of windows computes exactly what one
        inference over their concatenation computes).

        Args:
          frames: [B, T, H, W, C] the window's frames, in [0, 1].
          state: `timestep.ObjectState` with leading axis B (from `initial_state` or the previous window).
          first_step: scalar int32, frames of the stream seen before this window: the time index of its first frame
            (the count prior's t > 0 switch and the per-step seeds continue from it).
          seed: int32 [2], the stream's seed (the same for every window).
          num_particles: K.

        Returns:
          (best, log_weight, next_state): best is a dict of batch-major [B, T, ...] outputs of each stream's
          highest-weight particle (the keys of `call`); log_weight [B] its log weight over the window; next_state
          the `ObjectState` [B, ...] to pass with the next window.
        """
        frames = self._check_frames(frames)
        k = int(num_particles)
        tiled = tf.nest.map_structure(lambda x: tf.repeat(x, k, axis=0), state)  # [BK, ...], particle b·K + k.
        outputs, final = self._infer(frames, seed, k, tiled, first_step)
        log_weights = interface.sequence_log_weights(outputs, k)  # [B, K]
        best = interface.best_particle_with_boxes(self, outputs, log_weights, frames, outputs.keys())  # [B, T, ...]
        rows = interface.best_particle_rows(log_weights)  # [B]
        next_state = tf.nest.map_structure(lambda x: tf.gather(x, rows, axis=0), final)
        return best, tf.reduce_max(log_weights, axis=1), next_state

    def _imagine(self, state, first_step, num_steps, seed, discover):
        def step(t, state):
            seed_t = tf.random.experimental.stateless_fold_in(seed, first_step + t)
            return self.cell.prior_step(state, first_step + t, seed_t, discover=discover)

        outputs, state = unroll(step, state, num_steps, timestep.STEP_PRIOR_OUTPUTS, self.unroll_time)
        return self._with_drawn_boxes(self.cell.render(outputs)), state

    def generate(self, frames, num_steps, seed, discover=False):
        """Conditional generation (paper Fig. 6): infer from the observed frames, then run the priors.

        Args:
          frames: [B, T_obs, H, W, C] observed frames (T_obs ≥ 1).
          num_steps: number of frames to imagine after the observed ones.
          seed: int32 [2].
          discover: whether new objects may appear while imagining. The original switches discovery off when
            generating (BUILD.md O6); both are offered.

        Returns:
          (observed, generated): dicts of time-major tensors. `observed` as `call` with K = 1; `generated` has
          `canvas` [num_steps, B, H, W, C], the latents/ids/glimpses of `timestep.PRIOR_OUTPUTS` and `boxes`.
        """
        frames = self._check_frames(frames)
        seed_infer, seed_imagine = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        observed, state = self._infer(frames, seed_infer, 1)
        first = frames.shape[1] if frames.shape[1] is not None else tf.shape(frames)[1]
        generated, _ = self._imagine(state, first, num_steps, seed_imagine, discover)
        return observed, generated

    def sample(self, num_sequences, num_steps, seed):
        """Unconditional samples from the prior, discovery on (paper Fig. 5).

        Returns a dict of time-major tensors with the keys of `timestep.PRIOR_OUTPUTS` and `boxes`, canvas
        [num_steps, num_sequences, H, W, C].
        """
        state = self.cell.initial_state(num_sequences)
        generated, _ = self._imagine(state, 0, num_steps, seed, discover=True)
        return generated

