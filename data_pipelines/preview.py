"""Pictures of sequences: one row per sequence, one column per frame, boxes coloured by object id.

Used for the data preview and by the trainer and evaluator for ground truth and inferred boxes alike (inputs over
their reconstructions: `reconstruction_grid`): the colour of a box depends only on its object id, so a tracked object
keeps its colour across frames.
"""

import numpy as np
from PIL import Image, ImageDraw

# Distinct colours (Tableau 10); id i uses PALETTE[i % 10].
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def id_colour(object_id):
    return PALETTE[int(object_id) % len(PALETTE)]


def sequence_grid(frames, boxes=None, object_ids=None, present=None, row_titles=None, scale=3, gap=2):
    """Draws sequences as a grid image.

    Args:
      frames: float [R, T, H, W] or [R, T, H, W, 1] in [0, 1] (clipped for display).
      boxes: optional float [R, T, N, 4] (y_min, x_min, y_max, x_max) in pixels, max exclusive.
      object_ids: optional int [R, N] (fixed per sequence) or [R, T, N] (per frame); colour of each box.
      present: optional [R, T, N]; only boxes with present > 0 are drawn.
      row_titles: optional list of R strings written left of each row.
      scale: integer upscaling of each pixel.
      gap: pixels between frames.

    Returns:
      A `PIL.Image` in RGB.
    """
    frames = np.asarray(frames, np.float32)
    if frames.ndim == 5:
        frames = frames[..., 0]
    rows, t_len, h, w = frames.shape
    title_w = 0 if row_titles is None else 8 * max(len(s) for s in row_titles) + 8
    cell_h, cell_w = h * scale + gap, w * scale + gap
    image = Image.new("RGB", (title_w + t_len * cell_w + gap, rows * cell_h + gap), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    pixels = (np.clip(frames, 0.0, 1.0) * 255).astype(np.uint8)
    for r in range(rows):
        top = gap + r * cell_h
        if row_titles is not None:
            draw.text((4, top + cell_h // 2 - 6), row_titles[r], fill=(0, 0, 0))
        for t in range(t_len):
            left = title_w + gap + t * cell_w
            tile = Image.fromarray(pixels[r, t]).resize((w * scale, h * scale), Image.NEAREST)
            image.paste(tile.convert("RGB"), (left, top))
            if boxes is None:
                continue
            ids = None if object_ids is None else np.asarray(object_ids)[r]
            for n in range(boxes.shape[2]):
                if present is not None and present[r, t, n] <= 0:
                    continue
                y0, x0, y1, x1 = (float(v) * scale for v in boxes[r, t, n])
                if y1 <= y0 or x1 <= x0:
                    continue
                object_id = n if ids is None else (ids[t, n] if ids.ndim == 2 else ids[n])
                # Inferred boxes can be under a pixel wide: keep the outline's corners ordered.
                draw.rectangle([left + x0, top + y0, left + max(x1 - 1, x0), top + max(y1 - 1, y0)],
                               outline=id_colour(object_id))
    return image


def reconstruction_grid(frames, reconstruction, boxes=None, object_ids=None, presence=None, scale=2):
    """Rows of input frames, each followed by its reconstruction with the inferred boxes.

    Args:
      frames: [R, T, H, W, 1] inputs in [0, 1].
      reconstruction: [R, T, H, W, 1] the model's canvas (clipped to [0, 1] for display).
      boxes: [R, T, N, 4] inferred boxes in pixels; object_ids int [R, T, N]; presence [R, T, N] (0/1); all None
        for a model without objects.
      scale: pixel upscaling.

    Returns:
      A `PIL.Image` with 2R rows: input (with the inferred boxes) and reconstruction (with the same boxes).
    """
    frames, reconstruction = np.asarray(frames), np.asarray(reconstruction)
    rows = np.stack([frames, reconstruction], axis=1).reshape((-1,) + frames.shape[1:])  # [2R, T, H, W, 1]
    twice = lambda x: None if x is None else np.repeat(np.asarray(x), 2, axis=0)  # noqa: E731  (same boxes)
    titles = [name for _ in range(frames.shape[0]) for name in ("input", "recon")]
    return sequence_grid(rows, twice(boxes), twice(object_ids), twice(presence), row_titles=titles, scale=scale)


def as_summary_image(image):
    """A PIL image as the uint8 [1, H, W, 3] batch `tf.summary.image` takes."""
    return np.asarray(image.convert("RGB"), np.uint8)[None]
