"""Moving multi-MNIST: the sequences of the paper's §4.1, generated as in the authors' data code (BUILD.md O1).

Each sequence has T frames of an H×W canvas showing n digits (n drawn from `count_probs`, the same digits in every
frame). Digits are tight crops of MNIST images; each moves with a noisy-acceleration trajectory of its crop's
top-left corner that bounces on [0, canvas_size] per axis (BUILD.md O1.3), so digits can leave the canvas only through
the bottom or right edge and always come back. Frames are rendered by pasting each crop at its rounded corner and
combining digits with a pixel-wise max (BUILD.md O1.4).

Everything here is NumPy and vectorised over the sequences of a chunk; `generate_chunk` is deterministic given its
`numpy.random.Generator`. Array axes: n sequences of the chunk, T time, S digit slots (the largest possible count),
H×W canvas.
"""

import dataclasses
import math

import numpy as np

from data_pipelines.digits import DIGIT_SIDE
from data_pipelines.errors import DataError


@dataclasses.dataclass(frozen=True)
class MovingMnistConfig:
    """Parameters of the sequence generator (defaults: the `paper` preset, BUILD.md O1).

    Attributes:
      canvas_size: side of the square canvas in pixels (paper: 50). Must fit a whole digit (≥ 28).
      num_frames: frames per sequence T (paper: 10).
      count_probs: probability of n = 0, 1, 2, ... digits in a sequence; its length minus one is the number of
        digit slots S (paper: (1/3, 1/3, 1/3), i.e. `randint(0, 2)`).
      max_speed: velocity bound per axis in pixels per frame (paper: 10).
      max_acceleration: acceleration bound per axis in pixels per frame² (paper: 3).
      acceleration_noise_std: std of the Gaussian added to the acceleration each frame (paper: 0.01).
      allow_first_frame_overlap: if False (paper), digits' tight boxes may not intersect in the first frame.
      placement_retries: position redraws allowed per sequence in total, shared by its digits, before the whole
        sequence is drawn again with new digits (paper: 5). Unused when overlap is allowed.
    """

    canvas_size: int = 50
    num_frames: int = 10
    count_probs: tuple = (1 / 3, 1 / 3, 1 / 3)
    max_speed: float = 10.0
    max_acceleration: float = 3.0
    acceleration_noise_std: float = 0.01
    allow_first_frame_overlap: bool = False
    placement_retries: int = 5

    def __post_init__(self):
        def fail(name, why):
            raise DataError(f"moving-MNIST parameter {name}={getattr(self, name)!r}: {why}")

        if not isinstance(self.canvas_size, int) or self.canvas_size < DIGIT_SIDE:
            fail("canvas_size", f"must be an integer ≥ {DIGIT_SIDE}, the side of an MNIST digit")
        if not isinstance(self.num_frames, int) or self.num_frames < 1:
            fail("num_frames", "must be an integer ≥ 1")
        probs = tuple(float(p) for p in self.count_probs)
        if len(probs) < 2 or any(p < 0 or not math.isfinite(p) for p in probs):
            fail("count_probs", "must list ≥ 2 non-negative probabilities, for 0, 1, ... digits")
        if abs(sum(probs) - 1.0) > 1e-6:
            fail("count_probs", f"must sum to 1, sums to {sum(probs):.6f}")
        if probs[-1] == 0:
            fail("count_probs", "the last entry (the largest count) must be non-zero; drop it instead")
        object.__setattr__(self, "count_probs", probs)
        for name in ("max_speed", "max_acceleration", "acceleration_noise_std"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                fail(name, "must be a finite number ≥ 0")
        if not isinstance(self.placement_retries, int) or self.placement_retries < 0:
            fail("placement_retries", "must be an integer ≥ 0")

    @property
    def num_slots(self):
        """S, the largest possible number of digits in a sequence."""
        return len(self.count_probs) - 1


PRESETS = {
    # BUILD.md O1 exactly: 0/1/2 digits, no overlap in the first frame.
    "paper": MovingMnistConfig(),
    # The paper's harder variant (its Appendix F): up to three digits that may overlap from the first frame on.
    "hard": MovingMnistConfig(count_probs=(0.25, 0.25, 0.25, 0.25), allow_first_frame_overlap=True),
}


def preset(name, **overrides):
    """A named preset with optional field overrides (validated like any config)."""
    if name not in PRESETS:
        raise DataError(f"unknown moving-MNIST preset {name!r}; choose from {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def generate_chunk(config, digits, num_sequences, rng):
    """Generates `num_sequences` sequences and their ground truth.

    Args:
      config: a `MovingMnistConfig`.
      digits: a `DigitSet` (tight-crop templates, sizes, labels).
      num_sequences: n ≥ 0.
      rng: a `numpy.random.Generator`; the result is a deterministic function of its state.

    Returns:
      A dict of NumPy arrays:
        frames uint8 [n, T, H, W]; the rendered canvas.
        labels int32 [n, S]; digit class per slot, −1 for an absent slot.
        digit_index int32 [n, S]; index of each slot's digit in `digits`, −1 for an absent slot.
        object_ids int32 [n, S]; a stable id per digit (its slot index), −1 for an absent slot.
        count int32 [n]; number of digits in the sequence (the paper's counting target).
        visible int32 [n, T, S]; 1 where at least one pixel of the digit is on the canvas.
        visible_count int32 [n, T]; number of visible digits per frame.
        boxes int32 [n, T, S, 4]; (y_min, x_min, y_max, x_max) of the digit's drawn non-zero pixels, max exclusive,
          clipped to the canvas; zeros where the digit is not visible.
        corners float32 [n, T, S, 2]; unrounded (y, x) of the crop's top-left corner (trajectory state), zeros for
          absent slots.
    """
    if num_sequences < 0:
        raise DataError(f"number of sequences must be ≥ 0, got {num_sequences}")
    if len(digits) < config.num_slots:
        raise DataError(f"need at least {config.num_slots} digits to draw distinct digits per sequence, "
                        f"the digit set has {len(digits)}")
    n, s = num_sequences, config.num_slots
    counts = rng.choice(s + 1, size=n, p=np.asarray(config.count_probs)).astype(np.int32)
    present = np.arange(s)[None, :] < counts[:, None]  # [n, S]
    digit_index, corners0 = _draw_digits_and_placement(config, digits, counts, rng)
    corners = _trajectories(config, corners0, rng) * present[:, None, :, None]  # [n, T, S, 2]
    frames, visible, boxes = _render(config, digits, digit_index, present, corners)
    labels = np.where(present, digits.labels[digit_index], -1).astype(np.int32)
    object_ids = np.where(present, np.arange(s)[None, :], -1).astype(np.int32)
    return {
        "frames": frames,
        "labels": labels,
        "digit_index": np.where(present, digit_index, -1).astype(np.int32),
        "object_ids": object_ids,
        "count": counts,
        "visible": visible.astype(np.int32),
        "visible_count": visible.sum(axis=2).astype(np.int32),
        "boxes": boxes,
        "corners": corners.astype(np.float32),
    }


def _draw_digits_and_placement(config, digits, counts, rng):
    """Distinct digits per sequence and first-frame corners (BUILD.md O1.2), redrawing sequences that fail to place.

    Returns digit_index int [n, S] and corners float64 [n, S, 2] (integers, the crop's top-left (y, x)).
    """
    n, s = len(counts), config.num_slots
    digit_index = np.zeros((n, s), np.int64)
    corners = np.zeros((n, s, 2))
    todo = np.arange(n)
    while todo.size:
        idx = _distinct_digits(len(digits), todo.size, s, rng)
        pos, ok = _place(config, digits.sizes[idx], counts[todo], rng)
        digit_index[todo[ok]] = idx[ok]
        corners[todo[ok]] = pos[ok]
        todo = todo[~ok]  # Placement failed: draw these sequences again with new digits (same count).
    return digit_index, corners


def _distinct_digits(num_digits, n, s, rng):
    idx = rng.integers(0, num_digits, size=(n, s))
    for _ in range(1000):
        dup = np.zeros(n, bool)
        for a in range(s):
            for b in range(a + 1, s):
                dup |= idx[:, a] == idx[:, b]
        if not dup.any():
            return idx
        idx[dup] = rng.integers(0, num_digits, size=(dup.sum(), s))
    raise DataError("could not draw distinct digits; the digit set is too small")


def _place(config, sizes, counts, rng):
    """First-frame corners round(U[0,1)·(canvas − size)) with the shared-retry no-overlap rule (BUILD.md O1.2).

    Args:
      sizes: [m, S, 2] crop (height, width); counts: [m].

    Returns:
      corners float [m, S, 2] and ok bool [m] (False where the retries ran out).
    """
    m, s = sizes.shape[:2]
    room = config.canvas_size - sizes  # [m, S, 2]
    corners = np.round(rng.random((m, s, 2)) * room)
    ok = np.ones(m, bool)
    if config.allow_first_frame_overlap:
        return corners, ok
    retries = np.full(m, config.placement_retries)
    for j in range(1, s):
        active = counts > j
        while True:
            clash = active & ok & _overlaps_any(corners, sizes, j)
            if not clash.any():
                break
            ok &= ~(clash & (retries == 0))
            redraw = clash & (retries > 0)
            retries -= redraw
            corners[redraw, j] = np.round(rng.random((redraw.sum(), 2)) * room[redraw, j])
    return corners, ok


def _overlaps_any(corners, sizes, j):
    """Whether slot j's box [y, y+h) × [x, x+w) intersects any earlier slot's box. Returns bool [m]."""
    lo_j, hi_j = corners[:, j], corners[:, j] + sizes[:, j]  # [m, 2]
    lo, hi = corners[:, :j], corners[:, :j] + sizes[:, :j]  # [m, j, 2]
    inter = (lo_j[:, None] < hi) & (lo < hi_j[:, None])  # [m, j, 2]
    return inter.all(axis=2).any(axis=1)


def _trajectories(config, corners0, rng):
    """Noisy-acceleration trajectories of the crop corners, bouncing on [0, canvas] (BUILD.md O1.3).

    The state is drawn uniformly inside its bounds and advanced one step, as the original initialises it; then the
    position is replaced by the first-frame placement. Returns float64 [n, T, S, 2].
    """
    n, s = corners0.shape[:2]
    bounds = (0.0, float(config.canvas_size))
    v, a = config.max_speed, config.max_acceleration
    pos = rng.uniform(*bounds, size=(n, s, 2))
    vel = rng.uniform(-v, v, size=(n, s, 2))
    acc = rng.uniform(-a, a, size=(n, s, 2))
    pos, vel, acc = _step(config, bounds, pos, vel, acc, rng)
    pos = corners0.astype(np.float64)
    out = [pos]
    for _ in range(1, config.num_frames):
        pos, vel, acc = _step(config, bounds, pos, vel, acc, rng)
        out.append(pos)
    return np.stack(out, axis=1)


def _step(config, bounds, pos, vel, acc, rng):
    """pos += vel; vel += acc; acc += noise; mirror at each bound (negating vel and acc there); clip everything."""
    lo, hi = bounds
    pos = pos + vel
    vel = vel + acc
    acc = acc + rng.normal(0.0, config.acceleration_noise_std, size=acc.shape)
    for below, mirror in ((pos < lo, 2 * lo), (pos > hi, 2 * hi)):
        pos = np.where(below, mirror - pos, pos)
        vel = np.where(below, -vel, vel)
        acc = np.where(below, -acc, acc)
    pos = np.clip(pos, lo, hi)
    vel = np.clip(vel, -config.max_speed, config.max_speed)
    acc = np.clip(acc, -config.max_acceleration, config.max_acceleration)
    return pos, vel, acc


def _render(config, digits, digit_index, present, corners):
    """Pastes each present digit at its rounded corner with pixel-wise max; boxes from the drawn pixels.

    Returns frames uint8 [n, T, H, W], visible bool [n, T, S], boxes int32 [n, T, S, 4].
    """
    n, t_len, s = corners.shape[:3]
    size = config.canvas_size
    pad = size + DIGIT_SIDE  # Corners reach `size`, so a crop can extend DIGIT_SIDE past the canvas.
    frames = np.zeros((n, t_len, size, size), np.uint8)
    visible = np.zeros((n, t_len, s), bool)
    boxes = np.zeros((n, t_len, s, 4), np.int32)
    offsets = np.arange(DIGIT_SIDE)
    top_left = np.rint(corners).astype(np.int64)  # [n, T, S, 2]
    for j in range(s):
        seq = np.nonzero(present[:, j])[0]
        if seq.size == 0:
            continue
        template = digits.templates[digit_index[seq, j]]  # [m, 28, 28]
        nonzero = template > 0
        for t in range(t_len):
            y0, x0 = top_left[seq, t, j, 0], top_left[seq, t, j, 1]  # [m]
            rows = y0[:, None] + offsets  # [m, 28]
            cols = x0[:, None] + offsets  # [m, 28]
            canvas = np.zeros((seq.size, pad, pad), np.uint8)
            canvas[:, :size, :size] = frames[seq, t]
            ii = np.arange(seq.size)[:, None, None]
            canvas[ii, rows[:, :, None], cols[:, None, :]] = np.maximum(
                canvas[ii, rows[:, :, None], cols[:, None, :]], template)
            frames[seq, t] = canvas[:, :size, :size]
            # Ground truth from the pixels actually drawn on the canvas (clipped at the bottom/right edge).
            drawn = nonzero & (rows < size)[:, :, None] & (cols < size)[:, None, :]  # [m, 28, 28]
            row_any, col_any = drawn.any(axis=2), drawn.any(axis=1)  # [m, 28]
            vis = row_any.any(axis=1)
            first_row, last_row = row_any.argmax(axis=1), DIGIT_SIDE - row_any[:, ::-1].argmax(axis=1)
            first_col, last_col = col_any.argmax(axis=1), DIGIT_SIDE - col_any[:, ::-1].argmax(axis=1)
            box = np.stack([y0 + first_row, x0 + first_col, y0 + last_row, x0 + last_col], axis=1)
            visible[seq, t, j] = vis
            boxes[seq, t, j] = np.where(vis[:, None], box, 0)
    return frames, visible, boxes
