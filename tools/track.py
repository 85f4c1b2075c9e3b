"""`sqair-track`: find and follow the moving objects of a static-camera video with a trained SQAIR (paper §4.2).

    sqair-track video.avi --model pedestrians --out tracks/          # the model shipped with the package
    sqair-track video.avi --model runs/ped --out tracks/ --every 5     # a training run (its latest checkpoint)
    sqair-track video.avi --model exports/ped/3 --out tracks/          # a SavedModel written by `sqair-export`

How a video becomes model input (BUILD.md "Tracking a video"):

* Background subtraction exactly as `sqair-data from-video` prepares training data (grey, downscaled to
  --scale-width, median blur, MOG2, a 3×3 opening; the model sees people on black). The background model sees every
  frame; the first --warmup-frames only train it. The tracker sees every --every-th frame after that: the spacing the
  model was trained with (5 video frames for `pedestrians`).
* Coverage: the downscaled frame is cut into a grid of non-overlapping tiles of the model's input size (64×64 for
  `pedestrians`), padded with background at the right and bottom edges; the tiles are the batch of one inference.
  Limits: an object crossing a tile border is seen as two half-objects and gets a new id in the tile it enters; a
  tile holds at most the model's N objects (3).
* Time: the frames are cut into windows of --window frames (the model's training length); each window starts from
  the object state the previous one ended with (`SQAIR.track_window`: the `track_window` endpoint of a SavedModel),
  so ids and the objects' propagation continue across windows instead of restarting.
* Ids: a (tile, model id) pair becomes one video-wide track id, numbered from 1 in order of first appearance.

Outputs in OUT (boxes in the video's own pixels): `tracks.txt` in the MOTChallenge format
(`frame,id,x,y,w,h,conf,-1,-1,-1`, frame numbers from 1, left/top in 1-based pixels like the MOT benchmarks, conf the
presence probability), `tracks.json` (the same rows, the settings and a summary), and `tracks.gif` (or `.mp4`) with
the tracked frames and boxes coloured by id. The summary (frames, tracks, mean track length, objects per frame,
processing speed) is printed at the end.
"""

import argparse
import colorsys
import dataclasses
import json
import os
import sys
import time

import numpy as np

from data_pipelines import video  # Light: OpenCV is imported when a video is read.
from data_pipelines.errors import DataError

VIDEO_OUTPUTS = ("gif", "mp4", "none")


class TrackError(Exception):
    """The video or the model cannot be used as asked."""


@dataclasses.dataclass(frozen=True)
class TrackConfig:
    """Settings of `track_video` (defaults: those the `pedestrians` model was trained with).

    Attributes:
      every: the model sees every this many video frames (its training data's --frame-stride).
      window: frames per inference window (the model's training sequence length).
      start, end: video frame range [start, end) to track (end None: to the last frame).
      num_particles: K of an in-process model (a SavedModel keeps the K it was exported with).
      background: the background subtraction, a `data_pipelines.video.VideoConfig` (its scale_width,
        warmup_frames, history, var_threshold, invert and normalize; the settings the model's training data was
        made with). Its crop and sequence fields are not used.
      video_out: 'gif', 'mp4' or 'none'; gif_width: width of the annotated GIF in pixels.
    """

    every: int = 5
    window: int = 5
    start: int = 0
    end: int = None
    num_particles: int = 5
    background: video.VideoConfig = dataclasses.field(default_factory=video.VideoConfig)
    video_out: str = "gif"
    gif_width: int = 384

    def __post_init__(self):
        for name in ("every", "window", "num_particles", "gif_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TrackError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.start < 0:
            raise TrackError(f"--start must be ≥ 0, got {self.start}")
        if self.end is not None and self.end <= self.start:
            raise TrackError(f"--end {self.end} must be after --start {self.start}")
        if self.video_out not in VIDEO_OUTPUTS:
            raise TrackError(f"--video-out must be one of {', '.join(VIDEO_OUTPUTS)}, got {self.video_out!r}")


# ------------------------------------------------------------------------------------------------------------------
# The model: a SavedModel's `initial_state`/`track_window` signatures, or the same endpoints built in-process.

class Tracker:
    """Windowed tracking through the `initial_state` and `track_window` endpoints (`serving.export`).

    Attributes:
      image_shape: (H, W, C) of the model's input; source: what was loaded, for the record.

    `owner` is what the endpoints belong to (a loaded SavedModel, whose signatures stop working once it is
    garbage-collected); the tracker holds it for as long as it lives.
    """

    def __init__(self, initial_state_fn, track_window_fn, image_shape, source, owner=None):
        self._initial_state, self._track_window = initial_state_fn, track_window_fn
        self.image_shape, self.source = tuple(image_shape), source
        self._owner = owner

    def initial_state(self, num_sequences):
        import tensorflow as tf

        return self._initial_state(num_sequences=tf.constant(num_sequences, tf.int32))

    def window(self, frames, state):
        """frames float32 [B, T, H, W, C] in [0, 1] → (answer dict of NumPy arrays, next state)."""
        import tensorflow as tf

        out = self._track_window(frames=tf.constant(frames, tf.float32), **state)
        state = {key: value for key, value in out.items() if key.startswith("state_") or key == "frames_seen"}
        return {key: value.numpy() for key, value in out.items() if key not in state}, state


def load_tracker(spec, num_particles):
    """A `Tracker` for `spec`: a shipped model name, a run directory, a SavedModel version or a base directory of
    versions (the highest is used, as TF Serving does)."""
    import tensorflow as tf

    from trainers import checkpoints, pretrained

    if spec in pretrained.available():
        model, config, _ = pretrained.load(spec)
        return _in_process(model, num_particles, f"pretrained {spec}")
    if os.path.exists(os.path.join(spec, "config.json")):
        model, config, step = checkpoints.load_model(spec)
        return _in_process(model, num_particles, f"{os.path.abspath(spec)} (step {step})")
    path = spec
    if os.path.isdir(spec) and not os.path.exists(os.path.join(spec, "saved_model.pb")):
        versions = sorted(int(v) for v in os.listdir(spec) if v.isdigit())
        if versions:
            path = os.path.join(spec, str(versions[-1]))
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise TrackError(f"--model {spec!r} is neither a shipped model ({', '.join(pretrained.available())}), a "
                         f"training run directory (config.json), nor a SavedModel (saved_model.pb)")
    loaded = tf.saved_model.load(path)
    if "track_window" not in loaded.signatures:
        raise TrackError(f"{path} has no track_window signature (exported before it existed, or a model without "
                         f"objects over time): export it again with this version's sqair-export")
    frames_spec = loaded.signatures["track_window"].structured_input_signature[1]["frames"]
    return Tracker(loaded.signatures["initial_state"], loaded.signatures["track_window"], frames_spec.shape[2:],
                   os.path.abspath(path), owner=loaded)


def _in_process(model, num_particles, source):
    import tensorflow as tf

    from serving import export

    if not hasattr(model, "track_window"):
        raise TrackError(f"{source}: this model does not carry objects over time (only SQAIR models track)")
    endpoints = export.make_endpoints(model, num_particles)
    init_fn, init_sig = endpoints["initial_state"]
    window_fn, window_sig = endpoints["track_window"]
    names = [spec.name for spec in window_sig]
    init = tf.function(init_fn, input_signature=init_sig)
    window = tf.function(window_fn, input_signature=window_sig)
    return Tracker(lambda num_sequences: init(num_sequences),
                   lambda **kw: window(*[kw[n] for n in names]), model.config.image_shape, source)


# ------------------------------------------------------------------------------------------------------------------
# Tiles and ids.

def tile_origins(height, width, tile_h, tile_w):
    """(y, x) corners of a grid of non-overlapping tiles covering a height×width frame (padded at right/bottom)."""
    return [(y, x) for y in range(0, height, tile_h) for x in range(0, width, tile_w)]


def cut_tiles(image, origins, tile_h, tile_w):
    """uint8 [h, w] → float32 [B, tile_h, tile_w, 1] in [0, 1], zero-padded past the frame's edges."""
    padded = np.zeros([max(y for y, _ in origins) + tile_h, max(x for _, x in origins) + tile_w], np.float32)
    padded[:image.shape[0], :image.shape[1]] = image / 255.0
    return np.stack([padded[y:y + tile_h, x:x + tile_w] for y, x in origins])[..., None]


class IdMap:
    """(tile, model id) → a video-wide track id, numbered from 1 in order of first appearance."""

    def __init__(self):
        self._ids = {}

    def __call__(self, tile, model_id):
        return self._ids.setdefault((int(tile), int(model_id)), len(self._ids) + 1)

    def __len__(self):
        return len(self._ids)


def id_colour(track_id):
    """A stable, well-separated BGR colour per track id (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((track_id * 0.618034) % 1.0, 0.85, 1.0)
    return int(255 * b), int(255 * g), int(255 * r)


# ------------------------------------------------------------------------------------------------------------------

def track_video(path, tracker, config, out_dir, progress=None):
    """Tracks `path` and writes tracks.txt, tracks.json and the annotated video into `out_dir`.

    Returns the summary dict (also stored in tracks.json). Files are written to temporary names and renamed at the
    end, so an interrupted run leaves no file that looks complete.
    """
    import cv2

    from sqair_tf import glimpse

    try:
        stream = video.ForegroundStream(path, config.background)
    except DataError as e:
        raise TrackError(str(e)) from None
    tile_h, tile_w = tracker.image_shape[:2]
    first = max(config.start, config.background.warmup_frames)
    rows, pending, ids = [], [], IdMap()
    state, origins, scale = None, None, None
    counts, seen = [], 0
    began = time.time()
    sink = _VideoSink(out_dir, config, stream.info, cv2)

    def flush():
        nonlocal state
        frames = np.stack([tiles for _, _, tiles in pending], axis=1)  # [B, T, H, W, 1]
        answer, state = tracker.window(frames, state)
        for t, (index, frame, _) in enumerate(pending):
            boxes_here = []
            for b, (oy, ox) in enumerate(origins):
                shown = (answer["presence"][b, t] > 0) & glimpse.shows_something(answer["boxes"][b, t])  # [N]
                for n in np.flatnonzero(shown):
                    y0, x0, y1, x1 = answer["boxes"][b, t, n]
                    track_id = ids(b, answer["object_ids"][b, t, n])
                    # Tile pixels → downscaled frame → the video's own pixels.
                    box = np.array([(ox + x0) / scale, (oy + y0) / scale, (x1 - x0) / scale, (y1 - y0) / scale])
                    conf = float(answer["presence_prob"][b, t, n])
                    rows.append((index + 1, track_id, *np.round(box, 2).tolist(), round(conf, 4)))
                    boxes_here.append((track_id, box))
            counts.append(len(boxes_here))
            sink.add(frame, boxes_here)
        pending.clear()

    try:
        for index, frame, foreground, _ in stream:
            seen = index + 1
            if progress:
                progress(1)
            if config.end is not None and index >= config.end:
                break
            if index < first or (index - first) % config.every:
                continue
            if origins is None:
                scale = stream.info["scale"]
                origins = tile_origins(foreground.shape[0], foreground.shape[1], tile_h, tile_w)
                state = tracker.initial_state(len(origins))
            pending.append((index, frame, cut_tiles(foreground, origins, tile_h, tile_w)))
            if len(pending) == config.window:
                flush()
        if pending:
            flush()
    except BaseException:
        sink.discard()
        raise
    if not counts:
        sink.discard()
        raise TrackError(f"{path}: no frame to track (the video has {seen} frames; tracking starts at frame {first} "
                         f"= max(--start, --warmup-frames))")
    seconds = time.time() - began
    lengths = np.bincount([r[1] for r in rows])[1:] if rows else np.zeros([0])
    summary = {
        "video": os.path.abspath(path), "model": tracker.source, "settings": dataclasses.asdict(config),
        "video_frames_read": seen, "tracked_frames": len(counts), "tiles": len(origins),
        "tile_size": [tile_h, tile_w], "tracks": len(ids), "boxes": len(rows),
        "mean_track_length": round(float(lengths[lengths > 0].mean()), 2) if len(ids) else 0.0,
        "objects_per_tracked_frame": round(float(np.mean(counts)), 3), "seconds": round(seconds, 2),
        "video_frames_per_second": round(seen / seconds, 2),  # Every frame read is decoded and subtracted.
        "tracked_frames_per_second": round(len(counts) / seconds, 2),
    }
    _write_outputs(out_dir, rows, summary, sink)
    return summary


def _annotate(frame, boxes, config, cv2):
    """The frame with its boxes (colour and label by track id), at --gif-width for a GIF."""
    image = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    factor = config.gif_width / image.shape[1] if config.video_out == "gif" else 1.0
    if factor != 1.0:
        image = cv2.resize(image, (config.gif_width, round(image.shape[0] * factor)), interpolation=cv2.INTER_AREA)
    else:
        image = image.copy()
    for track_id, (x, y, w, h) in boxes:
        p0 = (int(round(x * factor)), int(round(y * factor)))
        p1 = (int(round((x + w) * factor)) - 1, int(round((y + h) * factor)) - 1)
        colour = id_colour(track_id)
        cv2.rectangle(image, p0, p1, colour, 2)
        cv2.putText(image, str(track_id), (p0[0], max(10, p0[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
                    cv2.LINE_AA)
    return image


class _VideoSink:
    """The annotated video (--video-out), written as the tracked frames arrive.

    An MP4 is streamed to disk frame by frame, so a long video does not have to fit in memory. A GIF's encoder needs
    every frame at the end, so each is kept as a 128-colour palette image (1 byte per pixel, a third of the frame),
    which bounds what a GIF of a long video costs; MP4 is the choice for long videos. The file has a `.partial`
    name until `finish`, and `discard` removes it.
    """

    def __init__(self, out_dir, config, info, cv2):
        self.config, self.info, self._cv2 = config, info, cv2
        self.path = os.path.join(out_dir, f"tracks.{config.video_out}") if config.video_out != "none" else None
        self.partial = (self.path + ".partial" + (".mp4" if config.video_out == "mp4" else "")) if self.path else None
        self._out_dir, self._frames, self._writer = out_dir, [], None

    def add(self, frame, boxes):
        if self.path is None:
            return
        image = _annotate(frame, boxes, self.config, self._cv2)
        if self.config.video_out == "gif":
            from PIL import Image

            # An adaptive palette without dithering: video noise dithered into a GIF triples its size.
            rgb = self._cv2.cvtColor(image, self._cv2.COLOR_BGR2RGB)
            self._frames.append(Image.fromarray(rgb).quantize(colors=128, dither=Image.Dither.NONE))
            return
        if self._writer is None:
            os.makedirs(self._out_dir, exist_ok=True)
            fps = (self.info.get("video_fps") or 10.0) / self.config.every
            h, w = image.shape[:2]
            self._writer = self._cv2.VideoWriter(self.partial, self._cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        self._writer.write(image)

    def finish(self):
        """Completes the partial file; returns it (None without a video)."""
        if self.path is None:
            return None
        if self.config.video_out == "gif":
            os.makedirs(self._out_dir, exist_ok=True)
            ms = int(round(1000 * self.config.every / self.info["video_fps"])) if self.info.get("video_fps") else 200
            self._frames[0].save(self.partial, format="GIF", save_all=True, append_images=self._frames[1:],
                                 duration=ms, loop=0)
            self._frames = []
        else:
            self._writer.release()
        return self.partial

    def discard(self):
        if self._writer is not None:
            self._writer.release()
        if self.partial and os.path.exists(self.partial):
            os.remove(self.partial)


def _write_outputs(out_dir, rows, summary, sink):
    os.makedirs(out_dir, exist_ok=True)
    final = {"txt": os.path.join(out_dir, "tracks.txt"), "json": os.path.join(out_dir, "tracks.json")}
    tmp = {key: path + ".partial" for key, path in final.items()}
    with open(tmp["txt"], "w") as f:
        for frame, track_id, x, y, w, h, conf in rows:
            f.write(f"{frame},{track_id},{x + 1:.2f},{y + 1:.2f},{w:.2f},{h:.2f},{conf:.4f},-1,-1,-1\n")
    with open(tmp["json"], "w") as f:
        json.dump({"summary": summary, "columns": ["frame", "id", "x", "y", "w", "h", "conf"],
                   "rows": [[frame, track_id, x + 1, y + 1, w, h, conf]
                            for frame, track_id, x, y, w, h, conf in rows]}, f)
    if sink.path is not None:
        final["video"], tmp["video"] = sink.path, sink.finish()
    for key in tmp:
        os.replace(tmp[key], final[key])
    summary["outputs"] = final


# ------------------------------------------------------------------------------------------------------------------

def _parser():
    defaults, background = TrackConfig(), video.VideoConfig()
    parser = argparse.ArgumentParser(prog="sqair-track", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", help="video file OpenCV can read (a static camera)")
    parser.add_argument("--model", default="pedestrians",
                        help="a shipped model (pedestrians, mnist), a training run directory, or a SavedModel "
                             "(a version directory or the base directory of versions; the highest is used). "
                             "Default: pedestrians")
    parser.add_argument("--out", required=True, help="output directory for tracks.txt, tracks.json and the video")
    parser.add_argument("--start", type=int, default=defaults.start,
                        help="first video frame to track, 0-based (the background model still sees every earlier "
                             "frame); default 0")
    parser.add_argument("--end", type=int, default=None, help="stop before this video frame (default: the end)")
    parser.add_argument("--every", type=int, default=defaults.every,
                        help="track every N-th video frame: the spacing of the model's training data "
                             f"(`sqair-data from-video --frame-stride`; default {defaults.every})")
    parser.add_argument("--window", type=int, default=defaults.window,
                        help=f"frames per inference window; the object state carries over between windows "
                             f"(default {defaults.window}, the pedestrian model's training length)")
    parser.add_argument("--k", type=int, default=defaults.num_particles,
                        help="particles per window for a shipped model or run directory (a SavedModel keeps the K "
                             f"it was exported with); default {defaults.num_particles}")
    parser.add_argument("--scale-width", type=int, default=background.scale_width,
                        help=f"frames are downscaled to this width before background subtraction and tiling, as "
                             f"for the model's training data (default {background.scale_width})")
    parser.add_argument("--warmup-frames", type=int, default=background.warmup_frames,
                        help=f"frames that only train the background model (default {background.warmup_frames})")
    parser.add_argument("--history", type=int, default=background.history,
                        help=f"MOG2 history length (default {background.history})")
    parser.add_argument("--var-threshold", type=float, default=background.var_threshold,
                        help=f"MOG2 variance threshold (default {background.var_threshold:g})")
    parser.add_argument("--no-invert", dest="invert", action="store_false",
                        help="do not invert the grey values before background subtraction (as `sqair-data "
                             "from-video --no-invert`; the MNIST model wants bright objects on black)")
    parser.add_argument("--no-normalize", dest="normalize", action="store_false",
                        help="do not rescale each foreground frame to a brightest pixel of 255")
    parser.add_argument("--video-out", choices=VIDEO_OUTPUTS, default=defaults.video_out,
                        help="annotated output: tracks.gif (tracked frames, --gif-width wide), tracks.mp4 (tracked "
                             "frames at full size) or none; default gif")
    parser.add_argument("--gif-width", type=int, default=defaults.gif_width,
                        help=f"width of the GIF in pixels (default {defaults.gif_width})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        try:
            background = video.VideoConfig(  # crop is a from-video setting; kept valid for any --scale-width.
                crop=max(1, min(video.VideoConfig.crop, args.scale_width)), scale_width=args.scale_width,
                warmup_frames=args.warmup_frames,
                                           history=args.history, var_threshold=args.var_threshold,
                                           invert=args.invert, normalize=args.normalize)
            config = TrackConfig(every=args.every, window=args.window, start=args.start, end=args.end,
                                 num_particles=args.k, background=background, video_out=args.video_out,
                                 gif_width=args.gif_width)
            video.check_readable(args.video)
            total = video.frame_count(args.video)
        except DataError as e:
            raise TrackError(str(e)) from None
        from trainers import checkpoints, pretrained

        try:
            tracker = load_tracker(args.model, config.num_particles)
        except (checkpoints.CheckpointError, pretrained.PretrainedError) as e:
            raise TrackError(str(e)) from None
        bar = None
        if not args.no_progress:
            from tqdm import tqdm

            if total is not None and args.end is not None:
                total = min(total, args.end)
            bar = tqdm(total=total, unit="frame", desc="track", file=sys.stderr, dynamic_ncols=True)
        try:
            summary = track_video(args.video, tracker, config, args.out,
                                  progress=bar.update if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
    except TrackError as e:
        print(f"sqair-track: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sqair-track: interrupted; nothing was written", file=sys.stderr)
        return 130
    print(f"tracked {summary['tracked_frames']} frames of {summary['video_frames_read']} "
          f"({summary['tiles']} tiles of {summary['tile_size'][0]}×{summary['tile_size'][1]} per frame): "
          f"{summary['tracks']} tracks, mean length {summary['mean_track_length']} frames, "
          f"{summary['objects_per_tracked_frame']} objects per frame")
    print(f"speed: {summary['video_frames_per_second']} video frames/s "
          f"({summary['tracked_frames_per_second']} tracked frames/s, {summary['seconds']} s)")
    for name, path in summary["outputs"].items():
        print(f"  {name}: {path}")
    return 0


def run():
    """Console entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())


if __name__ == "__main__":
    run()
