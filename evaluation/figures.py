"""Pictures of what the model infers: input over reconstruction with boxes coloured by object id (paper Fig. 4).

Figures are `PIL.Image`s built from NumPy arrays, so the same function feeds PNG files, animated GIFs and
TensorBoard image summaries (`data_pipelines.preview.as_summary_image`).
"""

import numpy as np

from data_pipelines import preview


def reconstruction_figure_of(frames, best, rows=4, scale=2):
    """`preview.reconstruction_grid` of the first `rows` sequences from a best-particle dict
    (`interface.best_particle`).

    Args:
      frames: [B, T, H, W, 1] inputs; best: dict with canvas and, for a model with objects, boxes, object_ids and
        z_pres, each [B, T, ...].
    """
    pick = lambda x: None if x is None else np.asarray(x)[:rows]  # noqa: E731
    return preview.reconstruction_grid(pick(frames), pick(best["canvas"]), pick(best.get("boxes")),
                                 pick(best.get("object_ids")), pick(best.get("z_pres")), scale=scale)


def glimpse_figure(glimpses, object_ids, presence, scale=3):
    """The decoded glimpse of every object slot over time: one row per (sequence, slot), boxed by object id.

    Args:
      glimpses: [R, T, N, G, G, 1] decoded glimpses (before rendering); object_ids int [R, T, N]; presence [R, T, N].

    Returns:
      A `PIL.Image` with R·N rows; absent slots are drawn blank.
    """
    glimpses = np.asarray(glimpses, np.float32)
    r, t, n, g = glimpses.shape[:4]
    present = np.asarray(presence) > 0
    rows = np.where(present[..., None, None, None], glimpses, 0.0)  # [R, T, N, G, G, 1]
    rows = np.transpose(rows, (0, 2, 1, 3, 4, 5)).reshape(r * n, t, g, g, 1)  # [R·N, T, G, G, 1]
    lo, hi = float(rows.min()), float(rows.max())
    rows = (rows - lo) / max(hi - lo, 1e-6)  # Decoded glimpses are linear outputs: normalise for display.
    full = np.tile(np.array([0.0, 0.0, g, g], np.float32), (r * n, t, 1, 1))  # [R·N, T, 1, 4]
    ids = np.transpose(np.asarray(object_ids), (0, 2, 1)).reshape(r * n, t, 1)
    pres = np.transpose(present, (0, 2, 1)).reshape(r * n, t, 1).astype(np.float32)
    titles = [f"seq {i} slot {k}" for i in range(r) for k in range(n)]
    return preview.sequence_grid(rows, full, ids, pres, row_titles=titles, scale=scale)


def generation_figure(frames, samples, observed_steps, boxes=None, object_ids=None, presence=None, scale=2):
    """Conditional generation (paper Fig. 6): each input, then its samples (observed part reconstructed, rest imagined).

    Args:
      frames: [R, T, H, W, 1] ground-truth sequences.
      samples: [R, S, T, H, W, 1] S sampled continuations; frames t < observed_steps are reconstructions.
      boxes / object_ids / presence: optional [R, S, T, N, ...] latents of the samples.

    Returns:
      A `PIL.Image` with R·(S+1) rows titled "input" and "sample s".
    """
    frames, samples = np.asarray(frames), np.asarray(samples)
    r, s = samples.shape[:2]
    rows = np.concatenate([frames[:, None], samples], axis=1).reshape((-1,) + frames.shape[1:])
    titles = [name for _ in range(r) for name in ["input"] + [f"sample {i} (t<{observed_steps} seen)"
                                                               for i in range(s)]]

    def with_truth_rows(x):  # Ground-truth rows carry no inferred boxes.
        if x is None:
            return None
        x = np.asarray(x)
        blank = np.zeros((r, 1) + x.shape[2:], x.dtype) - (1 if x.dtype.kind == "i" else 0)
        return np.concatenate([blank, x], axis=1).reshape((-1,) + x.shape[2:])

    return preview.sequence_grid(rows, with_truth_rows(boxes), with_truth_rows(object_ids),
                                 with_truth_rows(presence), row_titles=titles, scale=scale)


def sample_figure(canvas, boxes=None, object_ids=None, presence=None, scale=2):
    """Samples from the prior (paper Fig. 5): one row per sampled sequence, [R, T, H, W, 1] with optional latents."""
    return preview.sequence_grid(np.asarray(canvas), boxes, object_ids, presence,
                                 row_titles=[f"sample {i}" for i in range(np.asarray(canvas).shape[0])], scale=scale)


def save_gif(path, sequences, boxes=None, object_ids=None, presence=None, scale=3, frame_ms=300):
    """An animated GIF of sequences side by side (frame t of every sequence in GIF frame t).

    Args:
      sequences: [R, T, H, W, 1] in [0, 1]; boxes/object_ids/presence: optional [R, T, N, ...].
    """
    sequences = np.asarray(sequences)
    t_len = sequences.shape[1]
    images = []
    for t in range(t_len):
        pick = lambda x: None if x is None else np.swapaxes(np.asarray(x)[:, t:t + 1], 0, 1)  # noqa: E731
        # One row of R "frames" for time t.
        images.append(preview.sequence_grid(pick(sequences), pick(boxes), pick(object_ids), pick(presence),
                                            scale=scale).convert("P", palette=0))
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return path
