"""Shared pytest set-up: quiet TensorFlow logs and strict AutoGraph for every test."""
import collections
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Strict AutoGraph turns silent conversion fall-backs into errors (Sonnet's test_utils does the same).
os.environ.setdefault("AUTOGRAPH_STRICT_CONVERSION", "1")
# The command-line jobs the tests start keep no XLA compilation cache in the user's home (tests/test_xla_cache.py
# turns it on in a temporary directory).
os.environ.setdefault("SQAIR_XLA_CACHE", "off")

import pytest


# Seconds each long file took in one of the two processes of `make test` (clean clone of 850431e, 2-core machine,
# 2026-12-02; test_trainer.py's 555 s less two traced training loops its shared runs save). They only set the order
# in which the files are handed out: a stale figure costs minutes of balance, never a test.
FILE_SECONDS = {
    "test_trainer.py": 505, "test_train_cli.py": 241, "test_multiworker.py": 203, "test_interface.py": 187,
    "test_export.py": 162, "test_demo.py": 122, "test_pretrained.py": 105, "test_gradient_registry.py": 77,
    "test_init_from.py": 77, "test_track.py": 65, "test_model.py": 62, "test_video_data.py": 61,
    "test_eval_cli.py": 48, "test_xla_cache.py": 42, "test_vrnn.py": 42,
}


def pytest_collection_modifyitems(config, items):
    """Drops `tf.test.TestCase.test_session`, a deprecated context manager pytest collects as a test of every
    TestCase class and reports as skipped: those were not tests, and they hid real skips. Then puts the long files
    first."""
    items[:] = [item for item in items if item.name != "test_session"]
    # Longest first (stable; tests keep their order within a file), the rest by their number of `slow` tests:
    # `make test` hands whole files to its two pytest-xdist processes in this order (`--no-loadscope-reorder`;
    # xdist would otherwise order them by their number of tests), and a long file handed out last would leave one
    # process working alone at the end.
    slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: (-FILE_SECONDS.get(item.path.name, 0), -slow[item.path]))


@pytest.fixture(scope="session")
def debug_data(tmp_path_factory):
    """A tiny 32×32, 5-frame moving-MNIST dataset (train 64, test 16) matching the `debug` model preset."""
    from data_pipelines import generate, moving_mnist

    out = str(tmp_path_factory.mktemp("debug_data"))
    config = moving_mnist.preset("paper", canvas_size=32, num_frames=5)
    for split, num in (("train", 64), ("test", 16)):
        generate.generate_split(out, split, num, 0, config, num_workers=1)
    return out


@pytest.fixture(scope="session")
def debug_run(debug_data, tmp_path_factory):
    """A run directory trained for 2 steps on the `debug` preset by the real trainer (evaluation, export)."""
    from trainers import config as config_lib
    from trainers import trainer as trainer_lib

    workdir = str(tmp_path_factory.mktemp("debug_run"))
    trainer_lib.Trainer(config_lib.preset("debug", [f"data_dir={debug_data}", "total_steps=2"]), workdir,
                        progress=False, log=lambda *a: None).train()
    return workdir
