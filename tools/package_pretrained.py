"""Packages a training run's checkpoint as a model shipped inside the package (BUILD.md, "Pretrained models").

`package(...)` writes `trainers/pretrained_models/<name>/` (the layout `trainers/pretrained.py` documents) with the
held-out figures measured on the shipped weights; maintainers run it when a better model is trained:

    python -m tools.package_pretrained --workdir runs/track_s1 --checkpoint runs/track_s1/checkpoints/ckpt-25000 \\
        --name mnist --data DATA --num 1000
    python -m tools.package_pretrained --workdir runs/pedestrians --checkpoint runs/pedestrians/checkpoints/ckpt-N \\
        --name pedestrians --data VIDEO_DATA --num 484     # video data: counting against its proxy ground truth

When only the evaluation changes (the box rule, `sqair_tf.glimpse`, or the refinement, `sqair_tf.refinement`),
`--refresh` measures the shipped MNIST model's held-out figures again and rewrites them in its provenance, the
weights untouched:

    python -m tools.package_pretrained --refresh mnist --data DATA --num 1000
"""

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from trainers.pretrained import ROOT, WEIGHTS

# The recipe the Makefile's `pretrained` target trains; a run of it is reproduced by `make pretrained SEED=S
# MNIST_STEPS=N`.
MAKE_PRESET = "tracking_penalised"


def training_command(config, step):
    """The one command that trains an MNIST run's `config` to `step` (the provenance's `command`).

    The preset is the one the config needs the fewest `--set`s from (`config.as_preset_and_overrides`). The run's
    length is given as `--steps` (what `make pretrained` passes) rather than as a `--set total_steps`: a checkpoint
    before a run's end is what `--steps` stops at, since the schedule does not depend on the run's length.
    """
    from trainers import config as config_lib

    name, overrides = config_lib.as_preset_and_overrides(config)
    overrides = [o for o in overrides if not o.startswith("total_steps=")]
    steps = f" --steps {step}" if step is not None and step != config_lib.preset(name).total_steps else ""
    command = f"sqair-train --workdir runs/track_s{config.seed} --preset {name} --data DATA{steps}" + "".join(
        f" --set {o}" for o in overrides)
    if name == MAKE_PRESET and set(overrides) <= {f"seed={config.seed}"} and step is not None:
        command += f"  (or: make pretrained SEED={config.seed} MNIST_STEPS={step})"
    return command


def held_out_figures(workdir, checkpoint, data, num, k, refine_steps=0):
    """(figures, manifest): `sqair-eval`'s held-out figures of a checkpoint on the first `num` test sequences of
    `data` with K = `k`, as the provenance records them, and the test split's manifest. With `refine_steps`, the
    refinement uses the package's smooth-motion weight (`refinement.MOTION_WEIGHT`), as `sqair-eval` does."""
    from data_pipelines import records
    from evaluation import cli as eval_cli

    args = eval_cli.evaluation_args(workdir, checkpoint=checkpoint, data=data, k=k, num=num, chunk=k, batch=50,
                                    no_addition=True, refine_steps=refine_steps)
    report, _ = eval_cli.run_evaluation(args)
    tracking = report["tracking"]
    manifest = records.read_manifest(data, "test")
    if manifest.get("source") == "video":
        first, end = manifest["video_frame_range"]
        source = (f"sequences cut from {os.path.basename(manifest['video']['video'])} (video frames {first}–{end}, "
                  f"proxy ground truth: foreground components, no identities)")
    else:
        source = f"sequences, generator seed {manifest['seed']} ({manifest['digits'].split(' (')[0]})"
    figures = {"data": f"the first {report['num_sequences']} of a test split of {manifest['num_sequences']} "
                       f"{source}",
               "split": "test", "num_sequences": report["num_sequences"],
               "k": k, "num_frames": manifest["num_frames"],
               "counting_accuracy": report["counting_accuracy"],
               "visible_counting_accuracy": report["visible_counting_accuracy"],
               "log_px_iwae": report["log_px_iwae"], "proxy_ground_truth": report["proxy_ground_truth"],
               "refine_steps": refine_steps, "motion_weight": report["motion_weight"]}
    if tracking is not None:
        figures.update({key: tracking[key] for key in ("MOTA", "IDF1", "HOTA", "IDSW", "FP", "FN", "TP",
                                                       "detection_count_accuracy")},
                       box_iou_drawn=report["box_iou"]["drawn"])
    return figures, manifest


def package(workdir, checkpoint, name, data_dir, num=1000, k=5, training=None, out_root=ROOT):
    """Writes OUT_ROOT/NAME from a run's checkpoint: weights only, config and provenance with held-out figures.

    Args:
      workdir: the training run directory.
      checkpoint: the checkpoint prefix to ship.
      name: the model's name (`--pretrained NAME`).
      data_dir: data with a `test` split, for the held-out figures recorded in the provenance.
      num, k: test sequences and particles of those figures.
      training: dict of facts about the training (command, commits) to record, or None; the wall-clock minutes
        to the shipped step are added from the run's TensorBoard log (`run_history`) when it has them.
      out_root: parent directory (the package's own by default).

    Returns:
      The provenance dict. The directory is written next to its final place and renamed into it, so a crash leaves
      the previous model (or none), never a half-written one.
    """

    import tensorflow as tf

    from sqair_tf import glimpse
    from trainers import checkpoints, run_history

    model, config, step = checkpoints.load_model(workdir, checkpoint)
    training = dict(training or {})
    minutes = run_history.training_minutes(workdir)
    if step in minutes:
        training.setdefault("wall_clock_minutes", round(minutes[step], 1))
        training.setdefault("wall_clock_note", "training loops only (trainers/run_history.py), on the 2-core "
                                               "machine that trained it, partly shared with other work")

    figures, manifest = held_out_figures(workdir, checkpoint, data_dir, num, k)
    record = {
        "name": name, "preset_and_config": "config.json", "seed": config.seed, "step": step,
        "source_run": os.path.abspath(workdir), "source_checkpoint": os.path.abspath(checkpoint),
        "training": training,
        "held_out": figures,
        "box_rule": glimpse.box_rule(),
        "detections": "present objects that draw something (glimpse.shows_something)",
        "packaged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if manifest.get("source") == "video":
        record["training_data"] = {
            "data_dir": config.data_dir, "video": manifest["video"], "from_video": manifest["from_video"],
            "generator": "sqair-data from-video " + os.path.basename(manifest["video"]["video"]) + " " + " ".join(
                f"--{key.replace('_', '-')} {value}" for key, value in manifest["from_video"].items()
                if not isinstance(value, bool))}
    else:
        record["training_data"] = {"data_dir": config.data_dir, "generator": "sqair-data generate (paper preset, "
                                                                           "embedded 10k MNIST digits)"}
        record.update(mnist_figures(workdir, checkpoint, data_dir, num, k))
    final = os.path.join(out_root, name)
    tmp = os.path.join(out_root, f".tmp-{name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        weights = tf.train.Checkpoint(model=model, step=tf.Variable(step, dtype=tf.int64))
        _ = weights.save_counter  # Created now so it is written: the loaders assert every object is matched.
        weights.write(os.path.join(tmp, WEIGHTS))
        shutil.copy(os.path.join(workdir, "config.json"), os.path.join(tmp, "config.json"))
        with open(os.path.join(tmp, "provenance.json"), "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        old = final + ".old"
        if os.path.exists(final):
            os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record


@contextlib.contextmanager
def _test_split():
    """A temporary copy of the test split tests/test_pretrained.py generates, whose first 200 sequences the
    provenance's `held_out_200` figures are measured on (10,000 sequences, paper preset, seed 1, the digits' test
    half; the benchmark's test split)."""
    from data_pipelines import generate, moving_mnist

    with tempfile.TemporaryDirectory() as test_split:
        generate.generate_split(test_split, "test", 10_000, 1, moving_mnist.preset("paper"))
        yield test_split


def mnist_figures(workdir, checkpoint, data_dir, num, k):
    """An MNIST model's provenance records besides `held_out`: `held_out_200` (the first 200 sequences of the test
    split tests/test_pretrained.py generates) and, with the boxes as `sqair-demo` shows them (latents refined on
    the frames, BUILD.md "Refined boxes"), `held_out_200_refined` and `held_out_refined` (the first `num` of
    `data_dir`'s test split)."""
    from sqair_tf import refinement

    records = {}
    with _test_split() as test_split:
        records["held_out_200"] = held_out_figures(workdir, checkpoint, test_split, 200, k)[0]
        records["held_out_200_refined"] = held_out_figures(workdir, checkpoint, test_split, 200, k,
                                                           refinement.STEPS)[0]
    records["held_out_refined"] = held_out_figures(workdir, checkpoint, data_dir, num, k, refinement.STEPS)[0]
    return records


def refresh(name, data_dir, num=1000, k=5):
    """Measures a shipped MNIST model's held-out figures (`held_out` on the first `num` test sequences of
    `data_dir`, and `mnist_figures`) again with the package's box rule and refinement, and rewrites them in its
    provenance (written next to it and renamed over it), with the rule and the commit that measured them
    (`figures_measured`); the weights and every other record are kept. Returns the record."""
    from sqair_tf import glimpse
    from trainers import pretrained

    directory, checkpoint = pretrained.locate(name)
    record = pretrained.provenance(name)
    record["held_out"] = held_out_figures(directory, checkpoint, data_dir, num, k)[0]
    record.update(mnist_figures(directory, checkpoint, data_dir, num, k))
    record.pop("drawn_box_threshold", None)
    record.pop("refined_figures", None)
    record["box_rule"] = glimpse.box_rule()
    record["figures_measured"] = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  "commit": _git_commit(os.path.dirname(os.path.abspath(__file__)))}
    path = os.path.join(directory, "provenance.json")
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    return record


def _git_commit(path):
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.package_pretrained", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="training run directory (with --checkpoint)")
    source.add_argument("--refresh", metavar="NAME",
                        help="only measure the shipped MNIST model NAME's held-out figures again (weights "
                             "unchanged)")
    parser.add_argument("--checkpoint", help="checkpoint prefix to ship (with --workdir)")
    parser.add_argument("--name", default="mnist", help="name users load it by (default mnist)")
    parser.add_argument("--data", required=True, help="data directory with a test split (held-out figures)")
    parser.add_argument("--num", type=int, default=1000, help="test sequences for the recorded figures (1000)")
    parser.add_argument("--k", type=int, default=5, help="particles for the recorded figures (5)")
    parser.add_argument("--training-json", help="JSON file of training facts to record (e.g. the commits that "
                                                "trained it); the command, the wall-clock minutes (from the run's "
                                                "TensorBoard log) and the packaging commit are added")
    args = parser.parse_args(argv)
    if args.refresh:
        record = refresh(args.refresh, args.data, args.num, args.k)
        print(json.dumps({key: record[key] for key in ("held_out", "held_out_200", "held_out_refined",
                                                       "held_out_200_refined")}, indent=2))
        return 0
    if not args.checkpoint:
        parser.error("--workdir needs --checkpoint")
    training = {}
    if args.training_json:
        with open(args.training_json) as f:
            training = json.load(f)
    training.setdefault("packaging_commit", _git_commit(os.path.dirname(os.path.abspath(__file__))))
    from trainers import checkpoints

    config = checkpoints.load_config(args.workdir)
    step = int(args.checkpoint.rsplit("-", 1)[-1]) if args.checkpoint.rsplit("-", 1)[-1].isdigit() else None
    if args.name == "mnist":
        training.setdefault("command", training_command(config, step))
    elif args.name == "pedestrians":
        training.setdefault("command", "sqair-data from-video vtest.avi --out DATA --crop-stride 16 && sqair-train "
                                       f"--workdir runs/pedestrians --preset pedestrians --data DATA --steps {step}  "
                                       f"(or: make pretrained-pedestrians STEPS={step})")
    record = package(args.workdir, args.checkpoint, args.name, args.data, args.num, args.k, training)
    print(json.dumps(record["held_out"], indent=2))
    print(f"wrote {os.path.join(ROOT, args.name)}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
