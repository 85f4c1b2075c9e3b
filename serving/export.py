"""`sqair-export`: write a trained run as a TF Serving SavedModel with `track`, `generate` and `sample`.

    sqair-export --workdir runs/fast --out exports/sqair                # latest checkpoint, K = 5
    sqair-export --workdir runs/fast --out exports/sqair --k 10 --checkpoint runs/fast/checkpoints/ckpt-4000
    sqair-export --pretrained mnist --out exports/sqair                 # the model shipped with the package

The export goes to EXPORT_BASE/<version>/, the integer version directories TF Serving watches (it serves the highest
one). The default version is the checkpoint's training step; if that directory already exists, the smallest
integer above every existing version is used instead, so the new export is the one served and nothing is ever
overwritten. An explicit --version that exists is an error. The SavedModel is written to a hidden temporary
directory next to the target (TF Serving ignores names that are not integers) and renamed into place, so a server
never sees a half-written version.

Endpoints (signature names; B sequences, T frames, H×W frames with 1 channel, N object slots, D = z_what size):

  track (also serving_default)
    in:  frames          float32 [B, T, H, W, 1], values in [0, 1]
    out: presence        float32 [B, T, N]        1 where a slot holds an object, else 0
         boxes           float32 [B, T, N, 4]     (y_min, x_min, y_max, x_max) in pixels, max exclusive: the box
                                                  of the frame's pixels the object explains, zeros for empty slots
         glimpse_boxes   float32 [B, T, N, 4]     the object's glimpse footprint (larger than the object)
         object_ids      int32   [B, T, N]        track identity, −1 for empty slots
         counts          int32   [B, T]           objects per frame
         reconstruction  float32 [B, T, H, W, 1]  the model's rendering of each frame
         z_what          float32 [B, T, N, D]     appearance codes
         log_weight      float32 [B]              log importance weight of the returned particle (sum over T)
    Inference runs K particles (--k) with a fixed internal seed and returns the highest-weight particle, so the
    same request always gives the same answer. With --refine-steps N, that particle's object latents are refined
    by N gradient steps on the frames before the boxes, reconstruction and z_what are read; the frames of a
    request are refined together, each object's glimpse centre paying --motion-weight λ for its acceleration
    (0: each frame alone). Particle noise is drawn per batch row, so a sequence's answer can depend on the other
    sequences sent with it (relevant if TF Serving's request batching is on).
  generate
    in:  frames float32 [B, T_obs, H, W, 1] (observed, in [0, 1]), num_steps int32 [], seed int32 [2]
    out: frames float32 [B, num_steps, H, W, 1], presence, boxes, object_ids of the imagined steps (as `track`)
  sample
    in:  num_sequences int32 [], num_steps int32 [], seed int32 [2]
    out: as `generate`, with B = num_sequences
  initial_state, track_window (SQAIR models: tracking an endless stream window by window)
    initial_state in:  num_sequences int32 []
                  out: the empty object state of that many streams, state_z_what [B, N, D], state_z_where
                       [B, N, 4], state_z_pres [B, N], state_object_ids int32 [B, N], state_last_used_id int32 [B],
                       state_prior_state and state_temporal_state [B, N, U], and frames_seen int32 [] = 0
    track_window  in:  frames [B, T, H, W, 1] (the stream's next T frames), the state_* tensors and frames_seen
                       of the previous answer (or of initial_state)
                  out: the outputs of `track` for these frames, presence_prob [B, T, N], and the state_* and
                       frames_seen to send with the next window
    The window starts from the state the last one ended with, so objects keep their ids across windows; the state
    handed on is the best particle's (`SQAIR.track_window`). `sqair-track` uses these two signatures.
A model without objects (the VRNN baseline, `--model mlp-vrnn` in sqair-train) has nothing to track: its export has
`reconstruct` (also serving_default; in: frames as `track`; out: reconstruction and log_weight as `track`) in place of
`track`, and `generate` and `sample` answer `frames` only.

Bad requests fail inside the graph with an InvalidArgumentError naming the problem (so TF Serving returns it to the
client): frames not of rank 5, H or W or channels not the model's, a batch or time of 0, NaN or infinite values,
values outside [0, 1] (rejected, not clipped: out-of-range values almost always mean unscaled 8-bit pixels, and
clipping them would silently saturate the input), num_steps < 1 or num_sequences < 1. `frames` is declared with the
contract's shape [None, None, H, W, C]: Python loaders and saved_model_cli refuse another shape before the graph runs
(TF's message names both shapes); the in-graph rank/shape checks are written rank-agnostically for runtimes that feed
a request without comparing it to the signature. A wrong dtype is rejected by the signature.
"""

import argparse
import json
import os
import shutil
import sys
import time

# The fixed seed of `track`: inference is a deterministic function of (weights, frames, seed, K).
TRACK_SEED = (0, 0)
DEFAULT_NUM_PARTICLES = 5


class ExportError(Exception):
    """The export cannot be written as asked (bad arguments, version taken)."""


# ------------------------------------------------------------------------------------------------------------------
# Input checks, run inside the graph.

def _checked_frames(frames, image_shape, name="frames"):
    """Asserts that `frames` is a finite float [B ≥ 1, T ≥ 1, H, W, C] batch in [0, 1] and gives it that shape.

    Each condition is written to hold trivially when an earlier one already failed (a shape check passes when the
    rank is wrong, the range check skips non-finite values), so whichever assert the runtime evaluates first, the
    message names the actual problem: the executor does not order independent asserts, and a shape comparison of
    the wrong length would otherwise fail with a generic "Incompatible shapes". The result carries the static shape
    [None, None, H, W, C] the model's own Python-level checks need.
    """
    import tensorflow as tf

    h, w, c = image_shape
    shape = tf.shape(frames)  # [rank]
    rank_ok = tf.equal(tf.size(shape), 5)
    padded = tf.concat([shape, tf.zeros([5], tf.int32)], axis=0)[:5]  # Indexable whatever the rank.
    values = tf.reshape(frames, [-1])  # Rank-agnostic reductions (the rank may be wrong here).
    finite = tf.math.is_finite(values)
    in_range = (values >= 0.0) & (values <= 1.0)
    got = ["got shape", shape]
    checks = [
        tf.debugging.Assert(rank_ok, [f"{name} must have rank 5 [batch, time, height, width, channels];"] + got),
        tf.debugging.Assert(
            ~rank_ok | tf.reduce_all(tf.equal(padded[2:], [h, w, c])),
            [f"{name} must be [batch, time, {h}, {w}, {c}] (this model's height, width, channels);"] + got),
        tf.debugging.Assert(~rank_ok | (padded[0] > 0),
                            [f"{name} has a batch of 0 sequences; send at least one;"] + got),
        tf.debugging.Assert(~rank_ok | (padded[1] > 0),
                            [f"{name} has 0 frames (time axis); send at least one;"] + got),
        tf.debugging.Assert(tf.reduce_all(finite), [f"{name} contains NaN or infinite values"]),
        tf.debugging.Assert(
            tf.reduce_all(in_range | ~finite),
            [f"{name} values must be in [0, 1] (scale 8-bit pixels by 1/255); got min",
             tf.reduce_min(tf.where(finite, values, 0.0)), "max", tf.reduce_max(tf.where(finite, values, 0.0))]),
    ]
    with tf.control_dependencies(checks):
        return tf.ensure_shape(tf.identity(frames), [None, None, h, w, c])


def _checked_count(value, name):
    """Asserts a scalar count ≥ 1 (num_steps, num_sequences)."""
    import tensorflow as tf

    ok = tf.debugging.Assert(value >= 1, [f"{name} must be ≥ 1, got", value])
    with tf.control_dependencies([ok]):
        return tf.identity(value)


# ------------------------------------------------------------------------------------------------------------------
# Endpoint functions. Model outputs are time-major [T, B, ...]; the endpoints answer batch-major [B, T, ...].

def _batch_major(x):
    """[T, B, ...] → [B, T, ...]."""
    import tensorflow as tf

    return tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))


def _generated(outputs):
    """The generated-steps answer of `generate` and `sample` from the model's time-major prior outputs (frames
    only for a model without objects)."""
    answer = {"frames": _batch_major(outputs["canvas"])}  # [B, S, H, W, C]
    if "z_pres" in outputs:
        answer.update({
            "presence": _batch_major(outputs["z_pres"]),  # [B, S, N]
            "boxes": _batch_major(outputs["boxes"]),  # [B, S, N, 4]
            "object_ids": _batch_major(outputs["object_ids"]),  # [B, S, N]
        })
    return answer


def make_endpoints(model, num_particles=DEFAULT_NUM_PARTICLES, refine_steps=0, motion_weight=None):
    """The endpoint functions and their input signatures, for `keras.export.ExportArchive.add_endpoint`.

    A model with objects gets `track`, `generate` and `sample`; a model without objects (VRNN) has nothing to
    track and gets `reconstruct` (its `reconstruction` and `log_weight`) in place of `track`. With `refine_steps`,
    `track` and `track_window` answer with the best particle's latents refined on the frames
    (`SequenceModel.refine` with `motion_weight`; None: the package's `refinement.MOTION_WEIGHT`); the state
    `track_window` hands on stays the amortised one, and its smooth-motion term sees only the window's frames.

    Returns:
      dict name → (fn, input_signature), in the order the endpoints are added (`track` or `reconstruct` first,
      which ExportArchive makes serving_default).
    """
    import tensorflow as tf

    from sqair_tf import interface, refinement

    motion_weight = refinement.effective_motion_weight(refine_steps, motion_weight)
    image_shape = tuple(model.config.image_shape)
    k = int(num_particles)

    def best_of(frames, keys):
        """The highest-weight of K particles [B, T, ...], its sequence log weight [B] and the checked frames."""
        frames = _checked_frames(frames, image_shape)  # [B, T, H, W, C]
        outputs = model(frames, seed=tf.constant(TRACK_SEED, tf.int32), num_particles=k)  # [T, BK, ...]
        log_weights = interface.sequence_log_weights(outputs, k)  # [B, K]
        best = interface.best_particle_with_boxes(model, outputs, log_weights, frames, keys)  # [B, T, ...]
        return best, tf.reduce_max(log_weights, axis=1), frames

    def reconstruct(frames):
        best, log_weight, _ = best_of(frames, ("canvas",))
        return {"reconstruction": best["canvas"], "log_weight": log_weight}  # [B, T, H, W, C], [B]

    def refined(frames, best):
        if not refine_steps:
            return best
        return model.refine(frames, best, refine_steps, motion_weight=motion_weight)

    def track(frames):
        best, log_weight, frames = best_of(frames, TRACK_KEYS + (("z_where",) if refine_steps else ()))
        return _track_answer(refined(frames, best), log_weight)

    def initial_state(num_sequences):
        num_sequences = _checked_count(num_sequences, "num_sequences")
        answer = _state_answer(model.initial_state(num_sequences))
        answer["frames_seen"] = tf.constant(0, tf.int32)
        return answer

    def track_window(frames, frames_seen, **state):
        frames = _checked_frames(frames, image_shape)  # [B, T, H, W, C]
        state = _checked_state(state, tf.shape(frames)[0], frames_seen)
        best, log_weight, next_state = model.track_window(
            frames, state, frames_seen, tf.constant(TRACK_SEED, tf.int32), k)
        answer = _track_answer(refined(frames, best), log_weight)
        answer["presence_prob"] = best["presence_prob"]  # [B, T, N]
        answer.update(_state_answer(next_state))
        answer["frames_seen"] = frames_seen + tf.shape(frames)[1]
        return answer

    def generate(frames, num_steps, seed):
        frames = _checked_frames(frames, image_shape)
        num_steps = _checked_count(num_steps, "num_steps")
        _, generated = model.generate(frames, num_steps, seed)
        return _generated(generated)

    def sample(num_sequences, num_steps, seed):
        num_sequences = _checked_count(num_sequences, "num_sequences")
        num_steps = _checked_count(num_steps, "num_steps")
        return _generated(model.sample(num_sequences, num_steps, seed))

    # The contract's shape [B, T, H, W, C]: Python loaders and saved_model_cli refuse other shapes with TF's own
    # message naming both shapes; a runtime that feeds without checking (TF Serving's C++ path) reaches the
    # rank-agnostic in-graph checks of `_checked_frames` instead.
    frames_spec = tf.TensorSpec([None, None] + list(image_shape), tf.float32, name="frames")
    count = lambda name: tf.TensorSpec([], tf.int32, name=name)  # noqa: E731
    seed_spec = tf.TensorSpec([2], tf.int32, name="seed")
    first = ("track", track) if model.has_objects else ("reconstruct", reconstruct)
    endpoints = {
        first[0]: (first[1], [frames_spec]),
        "generate": (generate, [frames_spec, count("num_steps"), seed_spec]),
        "sample": (sample, [count("num_sequences"), count("num_steps"), seed_spec]),
    }
    if hasattr(model, "track_window"):  # Models that carry objects over time (SQAIR; not AIR or VRNN).
        state_specs = _state_specs(model)
        endpoints["initial_state"] = (initial_state, [count("num_sequences")])
        endpoints["track_window"] = (
            lambda frames, frames_seen, *state: track_window(frames, frames_seen, **dict(zip(STATE_FIELDS, state))),
            [frames_spec, count("frames_seen")] + [state_specs[f] for f in STATE_FIELDS])
    return endpoints


# The object state a stream carries between `track_window` calls: the fields of `sqair_tf.timestep.ObjectState`,
# named `state_<field>` in the signatures so that a client feeds each window's state outputs back as inputs.
STATE_FIELDS = ("z_what", "z_where", "z_pres", "object_ids", "last_used_id", "prior_state", "temporal_state")
TRACK_KEYS = ("z_pres", "boxes", "glimpse_boxes", "object_ids", "num_objects", "canvas", "z_what", "presence_prob")


def _track_answer(best, log_weight):
    """The `track` outputs from the best particle's batch-major outputs."""
    return {
        "presence": best["z_pres"],  # [B, T, N]
        "boxes": best["boxes"],  # [B, T, N, 4]
        "glimpse_boxes": best["glimpse_boxes"],  # [B, T, N, 4]
        "object_ids": best["object_ids"],  # [B, T, N]
        "counts": best["num_objects"],  # [B, T]
        "reconstruction": best["canvas"],  # [B, T, H, W, C]
        "z_what": best["z_what"],  # [B, T, N, D]
        "log_weight": log_weight,  # [B]
    }


def _state_specs(model):
    """TensorSpec of each state field, batch axis None (shapes and dtypes from the model's own initial state)."""
    import tensorflow as tf

    example = model.initial_state(1)
    return {f: tf.TensorSpec([None] + getattr(example, f).shape[1:].as_list(), getattr(example, f).dtype,
                             name="state_" + f) for f in STATE_FIELDS}


def _state_answer(state):
    return {"state_" + f: getattr(state, f) for f in STATE_FIELDS}


def _checked_state(state, batch, frames_seen):
    """Asserts that every state field has the frames' batch and `frames_seen` ≥ 0; returns the `ObjectState`."""
    import tensorflow as tf

    from sqair_tf import timestep

    checks = [tf.debugging.Assert(frames_seen >= 0, ["frames_seen must be ≥ 0, got", frames_seen])]
    for f in STATE_FIELDS:
        checks.append(tf.debugging.Assert(
            tf.equal(tf.shape(state[f])[0], batch),
            [f"state_{f} must have one row per sequence of frames: got", tf.shape(state[f])[0], "rows for", batch,
             "sequences"]))
    with tf.control_dependencies(checks):
        return timestep.ObjectState(**{f: tf.identity(state[f]) for f in STATE_FIELDS})


# ------------------------------------------------------------------------------------------------------------------
# Writing the version directory.

def _existing_versions(out_base):
    if not os.path.isdir(out_base):
        return []
    return sorted(int(name) for name in os.listdir(out_base) if name.isdigit())


def check_options(num_particles, refine_steps, version=None, motion_weight=None):
    """Raises ExportError for a bad K, refinement count, version (None: chosen later) or motion weight (None: the
    package's). Imports nothing heavy, so `main` calls it before TensorFlow loads, and `export_model` calls it for
    callers from Python."""
    from trainers import flags

    options = [("--k", num_particles, 1), ("--refine-steps", refine_steps, 0)]
    if version is not None:
        options.append(("--version", version, 0))
    problem = flags.first_problem(options, motion_weight)
    if problem:
        raise ExportError(problem)


def choose_version(out_base, step, version=None):
    """The version to write: `version` if given (≥ 0, `check_options`; an error if taken), else `step`, else one
    above the highest."""
    existing = _existing_versions(out_base)
    if version is not None:
        if version in existing or os.path.exists(os.path.join(out_base, str(version))):
            raise ExportError(f"{os.path.join(out_base, str(version))} already exists; refusing to overwrite it "
                              f"(choose another --version or leave it out)")
        return version
    if step not in existing and not os.path.exists(os.path.join(out_base, str(step))):
        return step
    return max(existing + [step]) + 1


def directory_size(path):
    """Bytes of all files under `path`."""
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def export_model(workdir, out_base, num_particles=DEFAULT_NUM_PARTICLES, checkpoint=None, version=None,
                 refine_steps=0, motion_weight=None):
    """Exports a run's checkpoint as OUT_BASE/<version>/ with the endpoints of `make_endpoints`.

    Args:
      workdir: a run directory written by `sqair-train`.
      out_base: the model base path TF Serving watches; created if missing.
      num_particles: K, particles `track` runs per sequence (≥ 1).
      refine_steps: refinement steps before `track` and `track_window` read the boxes (≥ 0; `make_endpoints`).
      motion_weight: λ ≥ 0 of the refinement's smooth-motion term (`SequenceModel.refine`; 0: each frame alone;
        None: the package's `refinement.MOTION_WEIGHT`).
      checkpoint: a checkpoint prefix (WORKDIR/checkpoints/ckpt-N) or None for the latest.
      version: integer version directory, or None for the checkpoint's step (or the next free integer above the
        existing versions if that is taken).

    Returns:
      The path of the written version directory.

    Raises:
      trainers.checkpoints.CheckpointError: no run directory or checkpoint.
      ExportError: bad `num_particles`, `refine_steps`, `version` or `motion_weight` (`check_options`), or `version`
        already exists.
    """
    import keras
    import tensorflow as tf

    from sqair_tf import glimpse
    from sqair_tf import refinement
    from trainers import checkpoints

    check_options(num_particles, refine_steps, version, motion_weight)
    motion_weight = refinement.effective_motion_weight(refine_steps, motion_weight)
    if os.path.exists(out_base) and not os.path.isdir(out_base):
        raise ExportError(f"{out_base} exists and is not a directory")
    model, config, step = checkpoints.load_model(workdir, checkpoint)
    checkpoint = checkpoint or tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    version = choose_version(out_base, step, version)

    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, signature) in make_endpoints(model, num_particles, refine_steps, motion_weight).items():
        archive.add_endpoint(name, fn, signature)  # `track` first: ExportArchive makes it serving_default.

    os.makedirs(out_base, exist_ok=True)
    final = os.path.join(out_base, str(version))
    tmp = os.path.join(out_base, f".tmp-{version}-{os.getpid()}")
    try:
        archive.write_out(tmp, verbose=False)
        info = {"workdir": os.path.abspath(workdir), "checkpoint": os.path.abspath(checkpoint), "step": step,
                "num_particles": num_particles, "refine_steps": refine_steps,
                "motion_weight": motion_weight, "track_seed": list(TRACK_SEED),
                "box_rule": glimpse.box_rule() if model.has_objects else None,
                "model": config.model_name, "image_shape": list(config.model.image_shape),
                "num_slots": getattr(config.model, "num_slots", None),
                "z_what_dim": getattr(config.model, "z_what_dim", None),
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        # assets.extra/ is shipped with the model but not loaded by TF Serving: provenance for humans.
        os.makedirs(os.path.join(tmp, "assets.extra"), exist_ok=True)
        with open(os.path.join(tmp, "assets.extra", "sqair_export.json"), "w") as f:
            json.dump(info, f, indent=2)
        if os.path.exists(final):  # Appeared while we were writing: never replace it.
            raise ExportError(f"{final} appeared during the export; refusing to overwrite it")
        os.rename(tmp, final)  # Atomic on one file system: a server sees no version or a complete one.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def track_saved_model(path, frames):
    """Runs the exported `track` signature on `frames` ([B, T, H, W, 1] in [0, 1]) and returns numpy arrays.

    `path` is a version directory (or a loaded SavedModel object, to avoid reloading in a loop). Only TensorFlow is
    needed: this is what a client without this package sees.
    """
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(path) if isinstance(path, (str, os.PathLike)) else path
    outputs = loaded.signatures["track"](frames=tf.constant(np.asarray(frames, np.float32)))
    return {key: value.numpy() for key, value in outputs.items()}


def describe_signatures(path):
    """Lines `name(inputs) -> outputs` for each serving signature of the SavedModel at `path`."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    lines = []
    for name in sorted(loaded.signatures):
        fn = loaded.signatures[name]
        _, kwargs = fn.structured_input_signature
        inputs = ", ".join(f"{key}: {_spec(spec)}" for key, spec in sorted(kwargs.items()))
        outputs = ", ".join(f"{key}: {_spec(spec)}" for key, spec in sorted(fn.structured_outputs.items()))
        lines.append(f"{name}({inputs}) -> {outputs}")
    return lines


def _spec(spec):
    if spec.shape.rank is None:
        return f"{spec.dtype.name} [any shape, checked in the graph]"
    shape = "[" + ", ".join("?" if d is None else str(d) for d in spec.shape) + "]"
    return f"{spec.dtype.name} {shape}"


# ------------------------------------------------------------------------------------------------------------------
# Command line.

def _parser():
    parser = argparse.ArgumentParser(prog="sqair-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="run directory written by sqair-train (config.json and checkpoints/)")
    source.add_argument("--pretrained", metavar="NAME",
                        help="export a model shipped with the package instead of a run (e.g. mnist)")
    parser.add_argument("--out", required=True, metavar="EXPORT_BASE",
                        help="model base path for TF Serving; the export goes to EXPORT_BASE/<version>/")
    parser.add_argument("--k", type=int, default=DEFAULT_NUM_PARTICLES,
                        help=f"particles K that `track` runs per sequence before keeping the highest-weight one "
                             f"(default {DEFAULT_NUM_PARTICLES}); latency grows about linearly with K")
    parser.add_argument("--refine-steps", type=int, default=0, metavar="N",
                        help="`track` and `track_window` refine the best particle's object latents by N gradient "
                             "steps on the frames before drawing the boxes (as sqair-eval --refine-steps; 50 is a "
                             "good value; default 0)")
    parser.add_argument("--motion-weight", type=float, default=None, metavar="λ",
                        help="with --refine-steps, the weight (per pixel²) of the refinement's smooth-motion term, "
                             "which asks each object's glimpse centre to keep its speed over a request's frames "
                             "(default: the package's 0.1, sqair_tf.refinement.MOTION_WEIGHT; 0: each frame alone)")
    parser.add_argument("--checkpoint", metavar="PREFIX",
                        help="checkpoint prefix to export, e.g. WORKDIR/checkpoints/ckpt-4000 (default: the latest)")
    parser.add_argument("--version", type=int,
                        help="integer version directory (default: the checkpoint's training step, or one above the "
                             "highest existing version if that is taken); an existing version is never overwritten")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)

    def fail(message):
        print(f"sqair-export: error: {message}", file=sys.stderr)
        return 2

    try:
        check_options(args.k, args.refine_steps, args.version, args.motion_weight)
    except ExportError as e:
        return fail(str(e))
    if args.pretrained:
        from trainers import pretrained

        try:
            args.workdir, shipped = pretrained.locate(args.pretrained)
        except pretrained.PretrainedError as e:
            return fail(str(e))
        args.checkpoint = args.checkpoint or shipped
    if not os.path.isdir(args.workdir):
        return fail(f"no run directory {args.workdir}")
    from trainers import checkpoints

    start = time.perf_counter()
    try:
        path = export_model(args.workdir, args.out, args.k, args.checkpoint, args.version, args.refine_steps,
                            args.motion_weight)
    except (checkpoints.CheckpointError, ExportError) as e:
        return fail(str(e))
    except KeyboardInterrupt:
        return 130
    seconds = time.perf_counter() - start
    print(f"exported {os.path.abspath(path)} ({directory_size(path) / 1e6:.1f} MB, K={args.k}, {seconds:.0f} s)")
    print("signatures:")
    for line in describe_signatures(path):
        print(f"  {line}")
    return 0


def run():
    """Console entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())


if __name__ == "__main__":
    run()
