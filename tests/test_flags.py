"""`trainers.flags`: the range checks `sqair-eval`, `sqair-export` and `sqair-demo` share, and their one message."""

import pytest

from tools import demo
from trainers import flags


def test_first_problem_names_the_first_flag_out_of_range():
    assert flags.first_problem([("--k", 5, 1), ("--refine-steps", 0, 0)], 0.1) is None
    assert flags.first_problem([("--k", 1, 1)], 0) is None and flags.first_problem() is None
    assert flags.first_problem([("--k", 0, 1), ("--refine-steps", -1, 0)]) == "--k must be an integer ≥ 1, got 0"
    assert flags.first_problem([("--k", 2, 1), ("--refine-steps", -1, 0)]) == (
        "--refine-steps must be an integer ≥ 0, got -1")
    # From Python, a float, a bool or a string is not an integer flag.
    for value in (2.0, True, "3"):
        assert flags.first_problem([("--k", value, 1)]) == f"--k must be an integer ≥ 1, got {value!r}"


@pytest.mark.parametrize("weight", [-0.5, float("nan"), float("inf"), True, "0.1"])
def test_motion_weight_must_be_a_finite_number_at_least_zero(weight):
    assert flags.first_problem([], weight) == f"--motion-weight must be a finite number ≥ 0, got {weight!r}"


def test_integer_flags_are_reported_before_the_motion_weight():
    assert flags.first_problem([("--k", 0, 1)], -1.0).startswith("--k ")


@pytest.mark.parametrize("argv, message", [
    (["--k", "0"], "--k must be an integer ≥ 1, got 0"),
    (["--num-test", "0"], "--num-test must be an integer ≥ 1, got 0"),
    (["--refine-steps", "-2"], "--refine-steps must be an integer ≥ 0, got -2"),
    (["--motion-weight", "-1"], "--motion-weight must be a finite number ≥ 0, got -1.0"),
])
def test_demo_refuses_bad_flags_before_any_work(argv, message, tmp_path, capsys):
    assert demo.main(["--workdir", str(tmp_path / "demo")] + argv) == 2
    err = capsys.readouterr().err
    assert err == f"sqair-demo: error: {message}\n"
    assert not (tmp_path / "demo").exists()  # Nothing was started.
