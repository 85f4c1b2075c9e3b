"""The machine's float32 matmul peak and the model's matmul FLOPs per training step (issue 11).

* Peak: a large square float32 matmul in TF on all cores (`tf.function`, median of several calls), in GFLOP/s.
* FLOPs of one training step (forward and backward of the VIMCO surrogate, as `trainers.trainer.loss_and_grads`):
  every MatMul / BatchMatMul / Einsum of the traced graph (without XLA, so the ops are visible), counted as
  2·(product of the output shape)·(contracted size) from static shapes, descending into while-loop bodies (times
  the trip count T) and other function calls. Element-wise work is not counted, so this is a lower bound of the
  step's arithmetic, and matmul FLOPs / step time is the fraction of the peak the step reaches on matrix work.

Usage:
    python benchmarks/flops.py [--preset paper] [--batch 32] [--particles 5] [--steps 10] [--size 4096]
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--particles", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=4096, help="matmul size for the peak (default 4096)")
    args = parser.parse_args()
    import tensorflow as tf

    from trainers import config as config_lib
    from trainers import trainer as trainer_lib
    from sqair_tf import model as model_lib

    print(f"float32 matmul peak ({args.size}², TF, all cores): {matmul_peak(args.size):.1f} GFLOP/s", flush=True)
    config = config_lib.preset(args.preset, [f"batch_size={args.batch}", f"num_particles={args.particles}"])
    model = model_lib.SQAIR(config.model)
    shape = (args.batch, args.steps) + config.model.image_shape
    model(tf.zeros((1, 1) + config.model.image_shape), seed=tf.constant([0, 0]))
    fn = tf.function(lambda f, c, s: trainer_lib.loss_and_grads(model, config, f, c, s))
    concrete = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32), tf.TensorSpec([args.batch], tf.int32),
                                        tf.TensorSpec([2], tf.int32))
    functions = {}

    def collect(graph):
        for name, function in getattr(graph, "_functions", {}).items():
            sub = getattr(function, "graph", None)
            if sub is not None and name not in functions:
                functions[name] = sub
                collect(sub)

    collect(concrete.graph)
    flops = graph_flops(concrete.graph, functions, trips=args.steps)
    print(f"{args.preset} B={args.batch} K={args.particles} T={args.steps}: {flops / 1e9:.1f} GFLOP of matmuls per "
          f"training step (forward + backward; {len(functions)} function bodies)")


if __name__ == "__main__":
    main()
