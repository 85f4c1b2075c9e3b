"""Training data from a static-camera video: background subtraction, crops, sequences (paper §4.2, Appendix E).

The paper trains SQAIR on CCTV video of walking pedestrians after removing the static background with OpenCV's
subtractors. Its pre-processing is only partly known, so this pipeline follows it where it is known and says where
it is ours (BUILD.md "Video data"):

1. Every frame is converted to grey, downscaled to `scale_width` pixels wide (the authors: 240), median-blurred
   (5×5), inverted (255 − value, the authors'; `invert`) and given to a background subtractor (OpenCV MOG2,
   `history`, `var_threshold`, no shadows; the authors used MOG from opencv-contrib, which the standard wheel
   lacks). The foreground mask is cleaned with a morphological opening (erosion then dilation) with a 3×3 cross;
   the authors' 2×2 kernels (erode once, dilate twice) have no centre pixel and move every mask 1–2 px down and
   right, which would bias the proxy boxes. The stored frame is the inverted grey frame times the mask, rescaled
   so that its brightest pixel is 255 (the authors'; `normalize`): bright people on black.
2. The background model sees every frame; sequences use every `frame_stride`-th frame after `warmup_frames`.
   During the warm-up the subtractor learns at OpenCV's automatic rate (1/n at frame n: a background in a few
   seconds), afterwards at the fixed rate 1/`history`, so that a person who walks slowly or pauses is not absorbed
   into the background within a few frames (ours; the authors' setting is not known).
3. The kept frames are split by time: the last `val_fraction` of the video's frames form the `test` split (the
   validation range) and the rest `train`, so no frame is in both; the ranges are recorded in the manifests.
4. Within a split, consecutive kept frames form non-overlapping windows of `seq_len` frames, and each window is cut
   into `crop`×`crop` crops on a grid of step `crop_stride`.
5. Proxy ground truth, from the mask alone (no person annotations exist for this video): the connected components
   of each crop's mask with at least `min_area` pixels, their boxes, and their number per frame. A sequence is kept
   if every frame has at most `max_objects` components and at least one frame has one. Components are not linked
   over time, so the proxy has no identities (object_ids −1) and the sequence-level `count` is the largest
   per-frame count; `visible_count` (per frame) is the proxy target. Everything that uses it calls it a proxy.

The output is the moving-MNIST TFRecord schema (`records.py`), so training, evaluation and `sqair-data preview`
work on it unchanged. The same video and settings give byte-identical files.
"""

import dataclasses
import os
import time

import numpy as np

from data_pipelines import records
from data_pipelines.errors import DataError


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    """Settings of `from_video` (module docstring; defaults suit the 10 fps, 768×576 vtest.avi).

    Attributes:
      crop: side of the square crops (64, the authors').
      seq_len: frames per sequence (5, the authors').
      max_objects: most components per frame in a kept sequence (3, the authors').
      frame_stride: every this many video frames one is kept (5: 0.5 s at 10 fps, the authors' spacing).
      scale_width: frames are downscaled to this width before everything else (240, the authors').
      crop_stride: grid step of the crops, in downscaled pixels (32).
      min_area: smallest connected component counted as an object, in downscaled pixels (30).
      val_fraction: the last this fraction of the video's frames forms the test (validation) split (0.2).
      warmup_frames: frames that only train the background model (50).
      history, var_threshold: MOG2's history length (500) and variance threshold (16).
      invert: the grey frame becomes 255 − value before background subtraction (the authors'), so the dark clothes
        of people on a light floor are stored bright, the way digits are: objects far brighter than the black
        background are what the likelihood rewards explaining.
      normalize: each foreground frame is rescaled so that its brightest pixel is 255 (the authors').
    """

    crop: int = 64
    seq_len: int = 5
    max_objects: int = 3
    frame_stride: int = 5
    scale_width: int = 240
    crop_stride: int = 32
    min_area: int = 30
    val_fraction: float = 0.2
    warmup_frames: int = 50
    history: int = 500
    var_threshold: float = 16.0
    invert: bool = True
    normalize: bool = True

    def __post_init__(self):
        for name in ("crop", "seq_len", "max_objects", "frame_stride", "scale_width", "crop_stride", "min_area",
                     "history"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DataError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.warmup_frames < 0:
            raise DataError(f"--warmup-frames must be ≥ 0, got {self.warmup_frames}")
        if not 0 < self.val_fraction < 1:
            raise DataError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if self.crop > self.scale_width:
            raise DataError(f"--crop {self.crop} is larger than the downscaled frame width {self.scale_width}")


def check_readable(path):
    """DataError unless `path` is a file OpenCV can open as a video."""
    import cv2

    if not os.path.isfile(path):
        raise DataError(f"no video file {path}")
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise DataError(f"OpenCV cannot open {path} as a video")
    finally:
        capture.release()


def frame_count(path):
    """The frame count the container declares (None if OpenCV cannot tell): the total of a progress bar only."""
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
    return count if count > 0 else None


class ForegroundStream:
    """Iterates over a video's frames as (index, frame, foreground, mask): step 1 of the module docstring, one frame
    at a time, so a video of any length streams in constant memory (`sqair-track`).

    frame is the decoded BGR (or grey) frame at the video's own size; foreground uint8 [h, w] and mask bool [h, w]
    are at the downscaled size. `info` (fps, size, scale) is known after construction. Raises DataError if OpenCV
    cannot open the file.
    """

    def __init__(self, path, config):
        import cv2

        check_readable(path)
        self.path, self.config = path, config
        self._capture = cv2.VideoCapture(path)
        if not self._capture.isOpened():
            raise DataError(f"OpenCV cannot open {path} as a video")
        width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.info = {"video": os.path.abspath(path), "video_fps": round(float(self._capture.get(cv2.CAP_PROP_FPS)
                                                                              or 0.0), 3),
                     "video_height": height, "video_width": width,
                     "scale": config.scale_width / width if width else None}

    def __iter__(self):
        import cv2

        config = self.config
        subtractor = cv2.createBackgroundSubtractorMOG2(history=config.history, varThreshold=config.var_threshold,
                                                        detectShadows=False)
        kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # Symmetric: the opening moves no edge.
        index, height = 0, None
        try:
            while True:
                ok, frame = self._capture.read()
                if not ok:
                    break
                if height is None:
                    height = max(1, round(frame.shape[0] * config.scale_width / frame.shape[1]))
                    self.info.update(video_height=int(frame.shape[0]), video_width=int(frame.shape[1]),
                                     scale=config.scale_width / frame.shape[1])
                rate = -1.0 if index < config.warmup_frames else 1.0 / config.history  # -1: OpenCV's automatic.
                grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                grey = cv2.resize(grey, (config.scale_width, height), interpolation=cv2.INTER_AREA)
                grey = cv2.medianBlur(grey, 5)
                if config.invert:
                    grey = 255 - grey
                mask = subtractor.apply(grey, learningRate=rate)
                mask = cv2.dilate(cv2.erode(mask, kernel), kernel) > 0
                foreground = np.where(mask, grey, 0).astype(np.uint8)
                if config.normalize and foreground.max() > 0:
                    foreground = (foreground.astype(np.float32) * (255.0 / foreground.max())).round().astype(np.uint8)
                yield index, frame, foreground, mask
                index += 1
        finally:
            self._capture.release()


def foreground_frames(path, config, progress=None):
    """Reads `path` and returns (foreground uint8 [N, h, w], mask bool [N, h, w], info dict) at the downscaled size.

    Raises DataError if OpenCV cannot open or decode the file, or it has no frames.
    """
    stream = ForegroundStream(path, config)
    foreground, masks = [], []
    for _, _, fg, mask in stream:
        foreground.append(fg)
        masks.append(mask)
        if progress:
            progress(1)
    if not foreground:
        raise DataError(f"{path} has no frames OpenCV can decode")
    info = dict(stream.info, video_bytes=os.path.getsize(path), video_sha256=records.file_sha256(path),
                video_frames=len(foreground))
    info = {key: info[key] for key in ("video", "video_bytes", "video_sha256", "video_frames", "video_fps",
                                       "video_height", "video_width", "scale")}  # The manifest's order.
    return np.stack(foreground), np.stack(masks), info


def proxy_objects(mask, min_area, max_objects):
    """Connected components of one crop's mask with at least `min_area` pixels, largest first.

    Returns (count, boxes int [max_objects, 4] (y_min, x_min, y_max, x_max), max exclusive, zero rows after count);
    count may exceed `max_objects` (only the largest are boxed).
    """
    import cv2

    num, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    comps = [stats[i] for i in range(1, num) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    comps.sort(key=lambda s: (-int(s[cv2.CC_STAT_AREA]), int(s[cv2.CC_STAT_TOP]), int(s[cv2.CC_STAT_LEFT])))
    boxes = np.zeros([max_objects, 4], np.int64)
    for k, s in enumerate(comps[:max_objects]):
        x, y, w, h = (int(s[cv2.CC_STAT_LEFT]), int(s[cv2.CC_STAT_TOP]), int(s[cv2.CC_STAT_WIDTH]),
                      int(s[cv2.CC_STAT_HEIGHT]))
        boxes[k] = (y, x, y + h, x + w)
    return len(comps), boxes


def split_ranges(num_frames, config):
    """{split: [first, end)} video-frame ranges of the kept frames: train before, test after the time boundary."""
    boundary = int(round(num_frames * (1 - config.val_fraction)))
    return {"train": (config.warmup_frames, boundary), "test": (max(boundary, config.warmup_frames), num_frames)}


def sequences(foreground, masks, frame_range, config):
    """The kept sequences of one split as the arrays `records.serialize_sequences` takes (plus crop positions)."""
    first, end = frame_range
    kept = np.arange(first, end)
    kept = kept[(kept - config.warmup_frames) % config.frame_stride == 0]  # One grid of kept frames for the video.
    h, w = foreground.shape[1:]
    n_slots, t_len, c = config.max_objects, config.seq_len, config.crop
    out = {key: [] for key in ("frames", "labels", "object_ids", "count", "visible", "visible_count", "boxes",
                               "corners", "video_frames", "crop_origin")}
    for start in range(0, len(kept) - t_len + 1, t_len):
        window = kept[start:start + t_len]
        for y in range(0, h - c + 1, config.crop_stride):
            for x in range(0, w - c + 1, config.crop_stride):
                counts, boxes = zip(*(proxy_objects(masks[i, y:y + c, x:x + c], config.min_area, n_slots)
                                      for i in window))
                if max(counts) > n_slots or max(counts) == 0:
                    continue
                counts = np.asarray(counts)
                visible = (np.arange(n_slots)[None, :] < counts[:, None]).astype(np.int64)  # [T, S]
                out["frames"].append(foreground[window, y:y + c, x:x + c])
                out["labels"].append(np.full([n_slots], -1, np.int64))
                out["object_ids"].append(np.full([n_slots], -1, np.int64))  # Proxy: no identities.
                out["count"].append(int(counts.max()))
                out["visible"].append(visible)
                out["visible_count"].append(counts.astype(np.int64))
                out["boxes"].append(np.stack(boxes))
                out["corners"].append(np.zeros([t_len, n_slots, 2], np.float32))
                out["video_frames"].append(window.tolist())
                out["crop_origin"].append((y, x))
    return out


def from_video(path, out_dir, config=VideoConfig(), shard_size=2000, progress=None):
    """Writes the `train` and `test` splits of `path` into `out_dir`; returns {split: manifest}.

    Both splits are written before either manifest, and an existing split in `out_dir` is removed first, so an
    interruption leaves no split that looks complete. Raises DataError on a bad video or settings that give no
    sequence in a split.
    """
    start = time.time()
    foreground, masks, info = foreground_frames(path, config, progress)
    need = config.warmup_frames + config.seq_len * config.frame_stride
    if len(foreground) < need + 1:
        raise DataError(f"{path} has {len(foreground)} frames; these settings need more than {need} per split "
                        f"(--warmup-frames {config.warmup_frames} + --seq-len {config.seq_len} × --frame-stride "
                        f"{config.frame_stride})")
    h, w = foreground.shape[1:]
    if config.crop > h:
        raise DataError(f"--crop {config.crop} is larger than the downscaled frame ({h}×{w})")
    ranges = split_ranges(len(foreground), config)
    per_split = {split: sequences(foreground, masks, ranges[split], config) for split in records.SPLITS}
    for split, arrays in per_split.items():
        if not arrays["frames"]:
            raise DataError(f"no {split} sequence in video frames {ranges[split][0]}–{ranges[split][1]} of {path}: "
                            f"no crop had 1–{config.max_objects} foreground components of ≥ {config.min_area} px "
                            f"in a window (try a lower --min-area, a larger --max-objects or a smaller --val-fraction)")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create output directory {out_dir}: {e}") from e
    for split in records.SPLITS:
        records.remove_split(out_dir, split)
    manifests = {}
    for split, arrays in per_split.items():
        arrays = {key: np.asarray(value) for key, value in arrays.items()}
        n = len(arrays["frames"])
        shards = []
        for index, first in enumerate(range(0, n, shard_size)):
            part = {key: value[first:first + shard_size] for key, value in arrays.items()}
            name = records.shard_name(split, index, -(-n // shard_size))
            size = records.write_shard(os.path.join(out_dir, name), records.serialize_sequences(part))
            shards.append({"file": name, "num_sequences": len(part["frames"]), "bytes": size,
                           "sha256": records.file_sha256(os.path.join(out_dir, name))})
        manifests[split] = {
            "schema_version": records.SCHEMA_VERSION, "split": split, "num_sequences": n, "seed": None,
            "shard_size": shard_size, "num_frames": config.seq_len, "height": config.crop, "width": config.crop,
            "channels": 1, "num_slots": config.max_objects, "source": "video", "proxy_ground_truth": True,
            "video": info, "video_frame_range": list(ranges[split]), "other_split_range": list(
                ranges["test" if split == "train" else "train"]), "from_video": dataclasses.asdict(config),
            "mean_frame": np.round(arrays["frames"].astype(np.float64).mean(axis=(0, 1)) / 255.0, 6).tolist(),
            "generation_seconds": round(time.time() - start, 2), "shards": shards,
        }
        # Where each sequence comes from, in the order of the records: its video frames and its crop's corner.
        manifests[split]["sequence_origins"] = [
            {"video_frames": f, "crop_yx": list(o)} for f, o in zip(arrays["video_frames"].tolist(),
                                                                   arrays["crop_origin"].tolist())]
    for split, manifest in manifests.items():
        records.write_manifest(out_dir, split, manifest)
    return manifests
