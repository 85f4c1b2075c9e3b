"""The persistent XLA compilation cache of the command-line jobs (`trainers/xla_cache.py`)."""

import json
import os
import subprocess
import sys
import time

import pytest

from trainers import xla_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def fresh_process(monkeypatch):
    """`enable` as in a console entry point: TensorFlow's runtime not yet started (in this process it has)."""
    monkeypatch.setattr(xla_cache, "_tensorflow_started", lambda: False)


def test_enable_turns_the_cache_on_only_when_asked_and_possible(tmp_path, fresh_process, monkeypatch):
    directory = tmp_path / "cache"
    environ = {xla_cache.ENV: str(directory), "TF_XLA_FLAGS": "--tf_xla_auto_jit=0"}
    assert xla_cache.enable(environ) == str(directory) and directory.is_dir()
    # The user's own XLA flags are kept; ours is added once.
    assert environ["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=0 {xla_cache.FLAG}={directory}"
    assert xla_cache.enable(environ) is None and environ["TF_XLA_FLAGS"].count(xla_cache.FLAG) == 1

    for off in ("off", "OFF", "0"):
        environ = {xla_cache.ENV: off}
        assert xla_cache.enable(environ) is None and "TF_XLA_FLAGS" not in environ

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    environ = {}
    default = xla_cache.enable(environ)
    # One directory per TensorFlow version and CPU: executables are machine code for the CPU that compiled them.
    assert default.startswith(str(tmp_path / "xdg" / "sqair_tf" / "xla" / "tf-"))
    assert default.endswith(xla_cache.cpu_tag()) and environ["TF_XLA_FLAGS"] == f"{xla_cache.FLAG}={default}"

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    environ = {xla_cache.ENV: str(blocker / "cache")}  # Cannot be created: TensorFlow would fail the compile.
    with pytest.warns(UserWarning, match="cannot use"):
        assert xla_cache.enable(environ) is None
    assert "TF_XLA_FLAGS" not in environ


def test_enable_refuses_once_tensorflow_has_started(tmp_path, monkeypatch):
    monkeypatch.setattr(xla_cache, "_tensorflow_started", lambda: True)
    environ = {xla_cache.ENV: str(tmp_path)}
    with pytest.warns(UserWarning, match="already started"):
        assert xla_cache.enable(environ) is None
    assert "TF_XLA_FLAGS" not in environ


def test_tensorflow_started_tracks_the_runtime():
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # This test process's runtime is certainly up now.
    assert xla_cache._tensorflow_started()


def test_prune_keeps_the_most_recently_used_entries_within_the_budget(tmp_path):
    now = time.time()

    def entry(name, size, age):
        path = tmp_path / name
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age, now - age))
        return path

    old, middle, recent = entry("old.pb", 400, 300), entry("middle.pb", 400, 200), entry("recent.pb", 400, 100)
    stale_tmp, fresh_tmp = entry("e.pb.123.tmp", 10, 7200), entry("e.pb.456.tmp", 10, 10)
    assert xla_cache.prune(str(tmp_path), max_bytes=900) == 2
    assert not old.exists() and not stale_tmp.exists()  # Least recently used, and a killed writer's leftover.
    assert middle.exists() and recent.exists() and fresh_tmp.exists()  # A writer may still be writing this one.
    assert xla_cache.prune(str(tmp_path), max_bytes=900) == 0


@pytest.mark.slow
def test_second_evaluation_loads_the_compiled_program_and_gets_the_same_numbers(debug_run, tmp_path):
    """Real `sqair-eval` processes with XLA: the first compiles and stores, the second loads, same report."""
    cache = tmp_path / "cache"
    reports = []
    for attempt in range(2):
        out_dir = tmp_path / f"eval{attempt}"
        env = dict(os.environ, PYTHONPATH=REPO, SQAIR_XLA_CACHE=str(cache), TF_CPP_MIN_LOG_LEVEL="0",
                   TF_CPP_VMODULE="device_executable_persistor=1")
        env.pop("TF_XLA_FLAGS", None)
        out = subprocess.run([sys.executable, "-m", "evaluation.cli", "--workdir", debug_run, "--out", str(out_dir),
                              "--k", "3", "--chunk", "3", "--num", "4", "--no-addition", "--jit", "--no-progress"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        entries = sorted(p.name for p in cache.iterdir() if p.suffix == ".pb")
        if attempt == 0:
            assert entries and "Serializing and saving cache entry" in out.stderr
            assert "Loading cached entry" not in out.stderr
            first_entries = entries
        else:
            assert "Loading cached entry" in out.stderr and "Serializing and saving" not in out.stderr
            assert entries == first_entries  # Nothing compiled anew.
        (report_path,) = out_dir.glob("*.json")
        report = json.loads(report_path.read_text())
        reports.append({k: v for k, v in report.items() if "seconds" not in k and "time" not in k})
    assert reports[0] == reports[1]  # The stored executable computes exactly what the compiled one did.
