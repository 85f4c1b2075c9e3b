"""The machine's float32 matmul peak and the model's matmul FLOPs per training step (issue 11).

* Peak: a large square float32 matmul in TF on all cores (`tf.function`, median of several calls), in GFLOP/s.
* FLOPs of one training step (forward and backward of the VIMCO surrogate, as `trainers.trainer.loss_and_grads`):
  every MatMul / BatchMatMul / Einsum of the traced graph (without XLA, so the ops are visible), counted as
  2·(product of the output shape)·(contracted size) from static shapes, descending into while-loop bodies (times
  the trip count T) and other function calls. Element-wise work is not counted, so this is a lower bound of the
  step's arithmetic, and matmul FLOPs / step time is the fraction of the peak the step reaches on matrix work.
* With `--eval-chunk C`: the FLOPs of one chunk of the many-particle evaluation instead (`sqair-eval`'s
  `evaluation.evaluator.chunk_function`: the forward pass over C particles of `--batch` sequences, the weights and
  the best particle's boxes), per particle-sequence, and the ceiling that the peak puts on a K-particle evaluation:
  sequences/s <= peak / (K x FLOPs per particle-sequence).

Usage:
    python benchmarks/flops.py [--preset paper] [--batch 32] [--particles 5] [--steps 10] [--size 4096]
    python benchmarks/flops.py --eval-chunk 50 --batch 10 [--k 1000]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def matmul_peak(size, repeats=5):
    import numpy as np
    import tensorflow as tf

    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    fn = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    fn(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / float(np.median(times)) / 1e9


def _dot_flops(op):
    """FLOPs of one MatMul / BatchMatMul / Einsum op from its static shapes (0 if unknown)."""
    if op.type not in ("MatMul", "Einsum") and not op.type.startswith("BatchMatMul"):
        return 0
    out = op.outputs[0].shape
    if not out.is_fully_defined():
        return 0
    n_out = out.num_elements()
    if op.type == "MatMul":
        a = op.inputs[0].shape
        return 2 * n_out * (a[0] if op.get_attr("transpose_a") else a[1])
    if op.type.startswith("BatchMatMul"):
        a = op.inputs[0].shape
        return 2 * n_out * (a[-2] if op.get_attr("adj_x") else a[-1])
    if op.type == "Einsum":
        equation = op.get_attr("equation").decode()
        inputs, output = equation.split("->")
        operands = inputs.split(",")
        sizes = {}
        for letters, tensor in zip(operands, op.inputs):
            letters = letters.replace("...", "")
            for letter, dim in zip(letters, tensor.shape[len(tensor.shape) - len(letters):]):
                sizes[letter] = dim
        contracted = set("".join(operands).replace(".", "")) - set(output.replace(".", ""))
        k = 1
        for letter in contracted:
            k *= sizes[letter]
        return 2 * n_out * k
    return 0


def graph_flops(graph, functions, trips=1):
    """Matmul FLOPs of `graph`, descending into called functions; While bodies run `trips` times."""
    total = 0
    for op in graph.get_operations():
        total += _dot_flops(op)
        for attr, repeat in (("body", trips), ("f", 1), ("then_branch", 1), ("else_branch", 1)):
            try:
                name = op.get_attr(attr).name
            except (ValueError, AttributeError):
                continue
            if name in functions:
                total += repeat * graph_flops(functions[name], functions, trips)
    return total


def concrete_flops(concrete, trips=1):
    """Matmul FLOPs of a traced `tf.function` (a ConcreteFunction), with every function body it calls."""
    functions = {}

    def collect(graph):
        for name, function in getattr(graph, "_functions", {}).items():
            sub = getattr(function, "graph", None)
            if sub is not None and name not in functions:
                functions[name] = sub
                collect(sub)

    collect(concrete.graph)
    return graph_flops(concrete.graph, functions, trips)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--particles", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=4096, help="matmul size for the peak (default 4096)")
    parser.add_argument("--eval-chunk", type=int, default=0,
                        help="count one chunk of C particles of the K-particle evaluation instead of a training step")
    parser.add_argument("--k", type=int, default=1000, help="particles of the evaluation (with --eval-chunk)")
    args = parser.parse_args()
    import tensorflow as tf

    from trainers import config as config_lib
    from trainers import trainer as trainer_lib
    from sqair_tf import model as model_lib

    peak = matmul_peak(args.size)
    print(f"float32 matmul peak ({args.size}², TF, all cores): {peak:.1f} GFLOP/s", flush=True)
    config = config_lib.preset(args.preset, [f"batch_size={args.batch}", f"num_particles={args.particles}"])
    model = model_lib.SQAIR(config.model)
    shape = (args.batch, args.steps) + config.model.image_shape
    model(tf.zeros((1, 1) + config.model.image_shape), seed=tf.constant([0, 0]))
    frames, counts, seed = (tf.TensorSpec(shape, tf.float32), tf.TensorSpec([args.batch], tf.int32),
                            tf.TensorSpec([2], tf.int32))
    if args.eval_chunk:
        from evaluation import evaluator

        visible_counts = tf.TensorSpec([args.batch, args.steps], tf.int32)  # Visible digits per frame.
        concrete = evaluator.chunk_function(model, args.eval_chunk).get_concrete_function(
            frames, counts, visible_counts, seed)
    else:
        fn = tf.function(lambda f, c, s: trainer_lib.loss_and_grads(model, config, f, c, s))
        concrete = fn.get_concrete_function(frames, counts, seed)
    flops = concrete_flops(concrete, trips=args.steps)
    if args.eval_chunk:
        per_particle = flops / (args.batch * args.eval_chunk)
        print(f"{args.preset} evaluation chunk, B={args.batch} C={args.eval_chunk} T={args.steps}: "
              f"{flops / 1e9:.2f} GFLOP of matmuls, {per_particle / 1e6:.1f} MFLOP per particle-sequence; "
              f"K={args.k}: {args.k * per_particle / 1e9:.1f} GFLOP per sequence, so at most "
              f"{peak * 1e9 / (args.k * per_particle):.2f} sequences/s at this machine's peak")
        return
    print(f"{args.preset} B={args.batch} K={args.particles} T={args.steps}: {flops / 1e9:.1f} GFLOP of matmuls per "
          "training step (forward + backward)")


if __name__ == "__main__":
    main()
