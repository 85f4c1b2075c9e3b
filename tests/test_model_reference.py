"""The model computes what it computed before the speed work (issue 11): outputs and gradients, float32 tolerance.

`tests/data/model_reference.npz` holds the weights, outputs and VIMCO-surrogate gradients of the `debug` model on
fixed frames and a fixed seed, written by the code at commit 56e5e2a with `benchmarks/reference_outputs.py`
(whose docstring gives the command). Restructuring for speed (batched work, fewer slices, fused kernels) may
change rounding, never values.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import reference_outputs  # noqa: E402

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "model_reference.npz")
# Outputs renamed since the reference was written: the glimpse footprint was `boxes` until `boxes` became the
# drawn-pixel box (issue 10).
RENAMED = {"out/boxes": "out/glimpse_boxes"}


def _below_model(path):
    """A variable path below the model's own name (Keras names a second model in one process `sqair_1`)."""
    return path.split("/", 1)[1]


@pytest.fixture(scope="module")
def reference_and_current():
    reference = dict(np.load(REFERENCE))
    model, config = reference_outputs.build_model()
    weights = {_below_model(v.path): v for v in model.weights}
    stored = {_below_model(key[len("weight/"):]): key for key in reference if key.startswith("weight/")}
    assert set(stored) == set(weights), sorted(set(stored) ^ set(weights))
    for path, variable in weights.items():
        variable.assign(reference[stored[path]])
    frames = reference_outputs.reference_inputs(config.image_shape)
    return reference, reference_outputs.compute(model, frames, (3, 4))


def test_outputs_equal_the_reference(reference_and_current):
    reference, current = reference_and_current
    outputs = sorted(key for key in reference if key.startswith("out/"))
    current = {key: current[RENAMED.get(key, key)] for key in outputs if RENAMED.get(key, key) in current}
    assert set(outputs) == set(current), sorted(set(outputs) - set(current))  # New outputs may be added.
    for key in outputs:
        if reference[key].dtype.kind == "i":
            np.testing.assert_array_equal(current[key], reference[key], err_msg=key)
        else:
            np.testing.assert_allclose(current[key], reference[key], rtol=1e-4, atol=1e-4, err_msg=key)
    np.testing.assert_allclose(reference_and_current[1]["loss"], reference["loss"], rtol=1e-5)


def test_gradients_equal_the_reference(reference_and_current):
    reference, current = reference_and_current
    grads = lambda arrays: {_below_model(key[len("grad/"):]): value  # noqa: E731
                            for key, value in arrays.items() if key.startswith("grad/")}
    reference, current = grads(reference), grads(current)
    assert sorted(reference) == sorted(current)
    for key in reference:
        scale = max(float(np.abs(reference[key]).max()), 1e-3)
        np.testing.assert_allclose(current[key], reference[key], rtol=1e-3, atol=1e-4 * scale, err_msg=key)
