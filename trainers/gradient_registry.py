"""Releasing the traced graphs that TensorFlow's custom-gradient registry would keep alive for good.

Every `tf.custom_gradient` function traced in graph mode registers its gradient under a fresh name in TensorFlow's
process-wide gradient registry, and never removes it. In TF 2.19–2.21 the registered closure also holds the
function's outputs (TensorFlow issue 97697, fixed upstream by pull request 109334), so it pins the whole `FuncGraph`
they belong to. A Keras optimizer's `apply_gradients` all-reduces the gradients through
`ReplicaContext.all_reduce`, which is such a function, so each trace of a training loop left its graph alive after
its `Trainer` was gone: about 0.7 GB per `debug` trainer, measured, which added up to most of the test suite's
memory (BUILD.md "Tests and benchmarks").

Nothing differentiates a training loop, so the gradients that tracing it registered are never looked up; dropping
them once the call returns lets the graph go with the functions that own it.
"""

import contextlib

from tensorflow.python.framework import ops  # The registry has no public handle.

_PREFIX = "CustomGradient-"  # The names `tf.custom_gradient` registers in graph mode.


def _registry():
    return ops._gradient_registry._registry  # pylint: disable=protected-access


@contextlib.contextmanager
def custom_gradients_dropped():
    """Runs the body, then unregisters the custom gradients registered while it ran.

    Only for code whose graphs are never differentiated afterwards (a training loop: the gradient it applies was
    taken inside it). Registrations made meanwhile by other threads are dropped too; only a later gradient through
    those ops would notice, and nothing in this package takes one.
    """
    before = set(_registry())
    try:
        yield
    finally:
        registry = _registry()
        for name in set(registry) - before:
            if name.startswith(_PREFIX):
                del registry[name]
