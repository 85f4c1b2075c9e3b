"""`sqair-data`: generate moving multi-MNIST, check it, and look at it.

    sqair-data generate --out DIR --split train --num 60000 --seed 0 --data-preset paper --digits embedded
    sqair-data preview DIR --out preview.png
    sqair-data verify DIR --split test
    sqair-data from-video VIDEO --out DIR --crop 64 --seq-len 5 --max-objects 3   # real video (paper §4.2)

Errors in the input (files, directories, parameters) print one line naming what is wrong and exit with status 2.
"""

import argparse
import dataclasses
import os
import sys

from data_pipelines import digits as digits_lib
from data_pipelines import moving_mnist
from data_pipelines.errors import DataError

_EPILOG = ("Presets: paper = the authors' generator, BUILD.md O1 (0–2 digits, no first-frame overlap); "
           "hard = up to 3 digits, overlap allowed.")


def _parser():
    parser = argparse.ArgumentParser(
        prog="sqair-data", description="Moving multi-MNIST data for SQAIR: generate, preview and verify TFRecords.",
        epilog=_EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{generate,preview,verify,from-video}")

    gen = sub.add_parser("generate", help="write a split as sharded TFRecords plus a manifest",
                         description="Generate moving multi-MNIST sequences into DIR/<split>-*.tfrecord and "
                                     "DIR/<split>.json (written last; an existing split is replaced).",
                         epilog=_EPILOG)
    gen.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    gen.add_argument("--split", choices=("train", "test"), default="train",
                     help="which digits to draw from; also names the files (default: train)")
    gen.add_argument("--num", type=int, default=None, metavar="N",
                     help="number of sequences (default: 60000 for train, 10000 for test, as in the paper)")
    gen.add_argument("--seed", type=int, default=0, metavar="S", help="random seed; same seed, same data (default 0)")
    gen.add_argument("--data-preset", choices=sorted(moving_mnist.PRESETS), default="paper",
                     help="generator preset (default: paper)")
    gen.add_argument("--digits", default=digits_lib.EMBEDDED, metavar="{embedded,keras,PATH}",
                     help="digit source: 'embedded' (10k real MNIST digits shipped with sqair-tf), 'keras' (the "
                          "Keras cache ~/.keras/datasets/mnist.npz), or a path to an mnist.npz (default: embedded)")
    gen.add_argument("--download", action="store_true",
                     help="with --digits keras: download MNIST into the Keras cache if it is not there")
    gen.add_argument("--canvas-size", type=int, help="canvas side in pixels (preset: 50)")
    gen.add_argument("--num-frames", type=int, help="frames per sequence T (preset: 10)")
    gen.add_argument("--count-probs", type=lambda s: tuple(float(v) for v in s.split(",")), metavar="P0,P1,...",
                     help="probabilities of 0, 1, 2, ... digits (preset paper: 1/3,1/3,1/3)")
    gen.add_argument("--max-speed", type=float, help="velocity bound, px/frame (preset: 10)")
    gen.add_argument("--max-acceleration", type=float, help="acceleration bound, px/frame² (preset: 3)")
    gen.add_argument("--acceleration-noise-std", type=float, help="acceleration noise std (preset: 0.01)")
    gen.add_argument("--allow-overlap", action=argparse.BooleanOptionalAction, default=None,
                     help="allow digits to overlap in the first frame (paper: no; hard: yes)")
    gen.add_argument("--shard-size", type=int, default=2000, metavar="N", help="sequences per shard (default 2000)")
    gen.add_argument("--workers", type=int, default=None, metavar="N",
                     help="worker processes (default: number of cores); does not change the data")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")

    pre = sub.add_parser("preview", help="draw a grid of sequences with ground-truth boxes to a PNG",
                         description="Draw the first sequences of a split: one row per sequence, boxes coloured by "
                                     "object id, row titles with the digit labels.")
    pre.add_argument("data_dir", metavar="DIR", help="directory written by 'sqair-data generate'")
    pre.add_argument("--out", required=True, metavar="FILE.png", help="PNG file to write")
    pre.add_argument("--split", choices=("train", "test"), default="train", help="split to draw (default: train)")
    pre.add_argument("--num", type=int, default=8, metavar="N", help="number of sequences (default 8)")
    pre.add_argument("--scale", type=int, default=3, help="pixel upscaling (default 3)")

    from data_pipelines import video  # Light: OpenCV is imported when a video is read.

    defaults = video.VideoConfig()
    vid = sub.add_parser(
        "from-video", help="background-subtract a static-camera video into train/test sequences of crops",
        description="Read VIDEO with OpenCV, remove the static background (MOG2 with morphological clean-up), cut "
                    "the foreground into CROP×CROP crops and SEQ_LEN-frame sequences, and write them as the train "
                    "split (the video's first part) and the test split (its last --val-fraction) in DIR, with "
                    "proxy ground truth from the foreground mask (connected components: boxes and counts, no "
                    "identities). Both manifests are written last.")
    vid.add_argument("video", metavar="VIDEO", help="a video file OpenCV can read (e.g. vtest.avi)")
    vid.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    for name, text in (
            ("crop", "side of the square crops, in downscaled pixels"),
            ("seq_len", "frames per sequence"),
            ("max_objects", "sequences with a frame of more foreground components are dropped"),
            ("frame_stride", "keep every S-th video frame (the background model sees them all)"),
            ("scale_width", "frames are downscaled to this width first"),
            ("crop_stride", "grid step between crops, in downscaled pixels"),
            ("min_area", "smallest foreground component counted as an object, in downscaled pixels"),
            ("warmup_frames", "first frames only train the background model"),
            ("history", "MOG2 background history, frames")):
        vid.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name),
                         help=f"{text} (default {getattr(defaults, name)})")
    vid.add_argument("--val-fraction", type=float, default=defaults.val_fraction,
                     help=f"the last this fraction of the video is the test split (default {defaults.val_fraction})")
    vid.add_argument("--var-threshold", type=float, default=defaults.var_threshold,
                     help=f"MOG2 variance threshold (default {defaults.var_threshold:g})")
    vid.add_argument("--no-invert", dest="invert", action="store_false",
                     help="keep the grey values as they are (default: invert them, 255 − value, before background "
                          "subtraction, so dark clothes on a light floor become bright objects on black)")
    vid.add_argument("--no-normalize", dest="normalize", action="store_false",
                     help="keep the foreground's brightness (default: rescale each frame so its brightest pixel is "
                          "255)")
    vid.add_argument("--quiet", action="store_true", help="no progress bar")

    ver = sub.add_parser("verify", help="read every record of a split and check it",
                         description="Read every record of a split (checksums, schema, shapes) and report counts.")
    ver.add_argument("data_dir", metavar="DIR", help="directory written by 'sqair-data generate'")
    ver.add_argument("--split", choices=("train", "test"), default="train", help="split to check (default: train)")
    return parser


def _generate(args):
    from data_pipelines import generate  # Imported per command: --help stays fast.

    overrides = {k: v for k, v in {
        "canvas_size": args.canvas_size, "num_frames": args.num_frames, "count_probs": args.count_probs,
        "max_speed": args.max_speed, "max_acceleration": args.max_acceleration,
        "acceleration_noise_std": args.acceleration_noise_std,
        "allow_first_frame_overlap": args.allow_overlap}.items() if v is not None}
    config = moving_mnist.preset(args.data_preset, **overrides)
    num = args.num if args.num is not None else (60000 if args.split == "train" else 10000)
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=num, unit="seq", desc=f"generate {args.split}", file=sys.stderr)
    try:
        manifest = generate.generate_split(
            args.out, args.split, num, args.seed, config, digit_source=args.digits, allow_download=args.download,
            shard_size=args.shard_size, num_workers=args.workers,
            progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {manifest['num_sequences']} {args.split} sequences ({len(manifest['shards'])} shards, "
          f"{manifest['generation_seconds']:.1f} s) to {os.path.abspath(args.out)}")
    print(f"digits: {manifest['digits']}")
    return 0


def _read_all(data_dir, split, limit=None):
    """Reads a split in file order; returns the concatenated NumPy batches and the manifest."""
    import numpy as np
    import tensorflow as tf

    from data_pipelines import dataset

    config = dataset.DataConfig(data_dir=data_dir, split=split, global_batch_size=min(limit or 256, 256),
                                shuffle=False, repeat=False, drop_remainder=False)
    ds, manifest = dataset.build_dataset(config)
    if limit is not None:
        ds = ds.unbatch().take(limit).batch(limit)
    parts = []
    try:
        for batch in dataset.checked_batches(ds, manifest):
            parts.append({k: v.numpy() for k, v in batch.items()})
    except tf.errors.InvalidArgumentError as e:
        first_line = str(e.message).strip().splitlines()[0]
        raise DataError(f"the '{split}' split in {data_dir} has a malformed record ({first_line}); "
                        "generate it again") from None
    if not parts:
        raise DataError(f"the '{split}' split in {data_dir} yielded no sequences")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, manifest


def _preview(args):
    from data_pipelines import preview

    if args.num < 1:
        raise DataError(f"--num must be ≥ 1, got {args.num}")
    if not args.out.lower().endswith(".png"):
        raise DataError(f"--out must name a .png file, got {args.out}")
    batch, _ = _read_all(args.data_dir, args.split, limit=args.num)
    titles = ["n=%d (%s)" % (c, ",".join(str(l) for l in labels if l >= 0))
              for c, labels in zip(batch["count"], batch["labels"])]
    image = preview.sequence_grid(batch["frames"], batch["boxes"], batch["object_ids"], batch["visible"],
                                  row_titles=titles, scale=args.scale)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp.png"
    image.save(tmp)
    os.replace(tmp, args.out)
    print(f"wrote {len(titles)} sequences to {os.path.abspath(args.out)} ({image.width}x{image.height})")
    return 0


def _verify(args):
    import numpy as np

    from data_pipelines import records

    records.verify_checksums(records.read_manifest(args.data_dir, args.split))  # Names a corrupted shard at once.
    batch, manifest = _read_all(args.data_dir, args.split)
    n = len(batch["count"])
    if n != manifest["num_sequences"]:
        raise DataError(f"the '{args.split}' split in {args.data_dir} holds {n} sequences, its manifest says "
                        f"{manifest['num_sequences']}")
    counts = np.bincount(batch["count"], minlength=manifest["num_slots"] + 1)
    if manifest.get("source") == "video":
        print(f"ok: {n} sequences in {len(manifest['shards'])} shards; largest proxy count per sequence "
              f"{counts.tolist()}; from video frames {manifest['video_frame_range']} of {manifest['video']['video']}")
        return 0
    print(f"ok: {n} sequences in {len(manifest['shards'])} shards; digit counts {counts.tolist()}; "
          f"digits: {manifest['digits']}")
    return 0


def _from_video(args):
    from data_pipelines import video

    config = video.VideoConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(video.VideoConfig)})
    video.check_readable(args.video)  # Before the progress bar, so a bad path gives the error line alone.
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=video.frame_count(args.video), unit="frame", desc="background subtraction",
                   file=sys.stderr)
    try:
        manifests = video.from_video(args.video, args.out, config, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    for split, manifest in manifests.items():
        first, end = manifest["video_frame_range"]
        print(f"wrote {manifest['num_sequences']} {split} sequences of {config.seq_len} {config.crop}×{config.crop} "
              f"crops from video frames {first}–{end} to {os.path.abspath(args.out)}")
    print("ground truth: proxy (foreground components of each crop; no identities)")
    return 0


def main(argv=None):
    args = _parser().parse_args(argv)
    command = {"generate": _generate, "preview": _preview, "verify": _verify,
               "from-video": _from_video}[args.command]
    try:
        return command(args)
    except DataError as e:
        print(f"sqair-data: error: {e}", file=sys.stderr)
        return 2


def run():
    """Console entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())


if __name__ == "__main__":
    run()
