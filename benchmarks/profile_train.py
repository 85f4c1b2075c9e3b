"""Where a training step's time goes: a TensorFlow profiler trace of real Trainer steps, aggregated by model part.

Profiles `--steps` training steps of a preset (after a warm-up loop) with `tf.profiler.experimental`, reads the
host XPlane it writes, and sums the CPU time of TensorFlow ops by the model component in their name scope
(discovery, propagation, glimpse networks, priors, decoder/renderer, spatial transformer, optimizer, ...) and by op
type. Summed CPU time counts work on both cores, so shares are of total CPU time, not wall time. Without XLA
(`jit_compile=false`), ops keep their scopes; under XLA they fuse into clusters that cannot be attributed.

Usage:
    python benchmarks/profile_train.py --data DATA [--preset paper] [--seq-len 10] [--steps 5] [--top 12]
"""

import argparse
import collections
import glob
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Scope substrings → component, checked in order (first match wins). The separable spatial transformer is the
# model's only user of einsum (sqair_tf/spatial_transformer.py), so Einsum ops are attributed to it by type.
COMPONENTS = (
    ("optimizer update", ("Adam", "adam", "RMSProp", "rms_prop", "optimizer")),
    ("VIMCO / IWAE objective and metrics", ("vimco", "iwae", "importance", "effective_sample", "elbo")),
    ("propagation core (PROP)", ("propagation",)),
    ("discovery core (DISC)", ("discovery",)),
    ("glimpse encoder / mask", ("glimpse_encoder", "glimpse_mask")),
    ("decoder and renderer", ("decoder", "renderer")),
    ("priors and latent summary", ("prior", "latent_summary")),
)
SPATIAL_TRANSFORMER = "spatial transformer (einsum: glimpse extraction / rendering)"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data directory with train and test splits")
    parser.add_argument("--preset", default="paper", help="training preset (default: paper)")
    parser.add_argument("--seq-len", type=int, default=10, help="sequence length T (default 10)")
    parser.add_argument("--steps", type=int, default=5, help="profiled steps (default 5)")
    parser.add_argument("--top", type=int, default=12, help="op types to list (default 12)")
    args = parser.parse_args()

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from trainers import config as config_lib
    from trainers import trainer as trainer_lib

    workdir = tempfile.mkdtemp(prefix="profile_train_")
    config = config_lib.preset(args.preset, [
        f"data_dir={args.data}", "jit_compile=false", f"curriculum_start={args.seq_len}",
        f"max_seq_len={args.seq_len}", f"steps_per_loop={args.steps}", "checkpoint_every=1000000",
        "eval_every=1000000", "image_every=1000000", "total_steps=1000000"])
    trainer = trainer_lib.Trainer(config, workdir, progress=False, log=lambda *a: None)
    trainer.train(total_steps=args.steps, finalize=False)  # Warm-up: tracing.
    logdir = os.path.join(workdir, "profile")
    tf.profiler.experimental.start(logdir)
    trainer.train(total_steps=2 * args.steps, finalize=False)
    tf.profiler.experimental.stop()

    space = xplane_pb2.XSpace()
    with open(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0], "rb") as f:
        space.ParseFromString(f.read())
    by_component, by_type = collections.Counter(), collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        metadata = plane.event_metadata
        for line in plane.lines:
            for event in line.events:
                name = metadata[event.metadata_id].name
                if ":" not in name:  # TF ops are "scope/name:OpType"; skip executor/runtime bookkeeping events.
                    continue
                scope, op_type = name.rsplit(":", 1)
                if (op_type in ("While", "StatefulPartitionedCall", "PartitionedCall", "Process", "Run")
                        or op_type.strip().startswith("__inference") or " " in op_type.strip()):
                    continue  # Runtime events and container ops: their bodies are counted op by op.
                if os.environ.get("PROFILE_DEBUG"):
                    print(name, event.duration_ps / 1e9)
                ms = event.duration_ps / 1e9
                by_type[op_type] += ms
                part = SPATIAL_TRANSFORMER if "Einsum" in op_type else next(
                    (label for label, keys in COMPONENTS if any(k in scope for k in keys)), "other")
                by_component[("backward: " if "gradient" in scope.lower() else "forward: ") + part] += ms
    total = sum(by_component.values())
    print(f"{args.preset} B={config.batch_size} K={config.num_particles} T={args.seq_len}, {args.steps} steps, "
          f"{total / args.steps:.0f} ms of op CPU time per step")
    print("by component (share of op CPU time):")
    for label, ms in by_component.most_common():
        print(f"  {100 * ms / total:5.1f} %  {label}")
    print(f"top {args.top} op types:")
    for op_type, ms in by_type.most_common(args.top):
        print(f"  {100 * ms / total:5.1f} %  {op_type}")


if __name__ == "__main__":
    main()
