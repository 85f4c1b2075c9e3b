"""Writes (or checks) a numerical reference of the model: outputs and gradients of a fixed tiny model.

The speed work of issue 11 must not change what the model computes. This script builds the `debug` model
with seeded weights, runs one K-particle forward pass on fixed frames with a fixed seed (no XLA: stateless
samples differ with and without XLA) and the gradient of the VIMCO surrogate, and stores the weights (by
variable path), the outputs and the gradients in an .npz. `tests/test_model_reference.py` loads the weights
into the current code and requires the same outputs and gradients within float32 tolerance.

The stored file `tests/data/model_reference.npz` was written by the code at commit 56e5e2a (before the speed
work) with:

    PYTHONPATH=<checkout of 56e5e2a> python benchmarks/reference_outputs.py --out tests/data/model_reference.npz
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH, STEPS, PARTICLES = 2, 4, 3


def reference_inputs(image_shape):
    """Fixed frames [B, T, H, W, C]: two bright squares moving one pixel per frame, plus faint noise."""
    import numpy as np

    h, w, c = image_shape
    rng = np.random.default_rng(0)
    frames = 0.05 * rng.random((BATCH, STEPS, h, w, c))
    for b in range(BATCH):
        for t in range(STEPS):
            y, x = 4 + t + 3 * b, 5 + 2 * t
            frames[b, t, y:y + 7, x:x + 6] = 0.9
            frames[b, t, 18 - t:25 - t, 20:26] = 0.8 if b == 0 else 0.0
    return frames.astype(np.float32)


def compute(model, frames, seed):
    """The model's outputs and the VIMCO-surrogate gradients (by variable path) for `frames`."""
    import tensorflow as tf

    from sqair_tf import interface
    from sqair_tf import objectives

    @tf.function
    def run(frames, seed):
        with tf.GradientTape() as tape:
            out = model(frames, seed=seed, num_particles=PARTICLES)
            log_weights = interface.sequence_log_weights(out, PARTICLES)
            discrete = tf.reshape(tf.reduce_sum(out["log_q_discrete"], 0), [-1, PARTICLES])
            loss = tf.reduce_mean(objectives.vimco_surrogate_loss(log_weights, discrete))
        grads = tape.gradient(loss, model.trainable_variables)
        return out, loss, grads

    out, loss, grads = run(tf.constant(frames), tf.constant(seed, tf.int32))
    result = {f"out/{key}": value.numpy() for key, value in out.items()}
    result["loss"] = loss.numpy()
    result.update({f"grad/{v.path}": g.numpy() for v, g in zip(model.trainable_variables, grads)})
    return result


def build_model():
    """The `debug` model with its variables created (weights seeded, then overwritten by the caller if needed)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from sqair_tf import config as config_lib
    from sqair_tf import model as model_lib

    keras.utils.set_random_seed(0)
    config = config_lib.preset("debug")
    mean_image = np.full(config.image_shape, 0.02, np.float32)
    model = model_lib.SQAIR(config, mean_image=mean_image)
    model(tf.zeros((1, 1) + config.image_shape), seed=tf.constant([0, 0]))
    return model, config


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the .npz to write")
    args = parser.parse_args()
    import numpy as np

    model, config = build_model()
    frames = reference_inputs(config.image_shape)
    result = compute(model, frames, (3, 4))
    result.update({f"weight/{v.path}": v.numpy() for v in model.weights})
    np.savez_compressed(args.out, **result)
    print(f"wrote {args.out}: {len(result)} arrays")


if __name__ == "__main__":
    main()
