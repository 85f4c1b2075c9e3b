"""Pictures of what the model infers: input over reconstruction with boxes coloured by object id (paper Fig. 4).

Figures are `PIL.Image`s built from NumPy arrays, so the same function feeds PNG files, animated GIFs and
TensorBoard image summaries (`as_summary_image`).
"""

import numpy as np

from data_pipelines import preview


def reconstruction_figure(frames, reconstruction, boxes, object_ids, presence, scale=2):
    """Rows of input frames, each followed by its reconstruction with the inferred boxes.

    Args:
      frames: [R, T, H, W, 1] inputs in [0, 1].
      reconstruction: [R, T, H, W, 1] the model's canvas (clipped to [0, 1] for display).
      boxes: [R, T, N, 4] inferred boxes in pixels; object_ids int [R, T, N]; presence [R, T, N] (0/1).
      scale: pixel upscaling.

    Returns:
      A `PIL.Image` with 2R rows: input (with the inferred boxes) and reconstruction (with the same boxes).
    """
    frames, reconstruction = np.asarray(frames), np.asarray(reconstruction)
    rows = np.stack([frames, reconstruction], axis=1).reshape((-1,) + frames.shape[1:])  # [2R, T, H, W, 1]
    twice = lambda x: np.repeat(np.asarray(x), 2, axis=0)  # noqa: E731  (same boxes on both rows)
    titles = [name for _ in range(frames.shape[0]) for name in ("input", "recon")]
    return preview.sequence_grid(rows, twice(boxes), twice(object_ids), twice(presence), row_titles=titles,
                                 scale=scale)


def reconstruction_figure_of(frames, best, rows=4, scale=2):
    """`reconstruction_figure` of the first `rows` sequences from a best-particle dict (`model.best_particle`).

    Args:
      frames: [B, T, H, W, 1] inputs; best: dict with canvas, boxes, object_ids and z_pres, each [B, T, ...].
    """
    pick = lambda x: np.asarray(x)[:rows]  # noqa: E731
    return reconstruction_figure(pick(frames), pick(best["canvas"]), pick(best["boxes"]), pick(best["object_ids"]),
                                 pick(best["z_pres"]), scale=scale)


def as_summary_image(image):
    """A PIL image as the uint8 [1, H, W, 3] batch `tf.summary.image` takes."""
    return np.asarray(image.convert("RGB"), np.uint8)[None]
