"""Every flag of every console command is explained: `--help` of the installed script lists it with a help text.

Argparse lists a flag in `--help` whether or not it has a help text, so listing alone proves nothing; this checks
each parser's actions for a real explanation, then that the installed script prints all of them.
"""

import argparse
import os
import subprocess
import sys

import pytest

from data_pipelines import cli as data_cli
from evaluation import cli as eval_cli
from serving import export
from tools import demo
from tools import track
from trainers import cluster
from trainers import train

BIN = os.path.dirname(sys.executable)
COMMANDS = {  # console script → (its parser, sub-command or None)
    "sqair-train": (train._parser, None),
    "sqair-train-cluster": (cluster._parser, None),
    "sqair-eval": (eval_cli._parser, None),
    "sqair-export": (export._parser, None),
    "sqair-demo": (demo._parser, None),
    "sqair-track": (track._parser, None),
    "sqair-data generate": (data_cli._parser, "generate"),
    "sqair-data preview": (data_cli._parser, "preview"),
    "sqair-data verify": (data_cli._parser, "verify"),
    "sqair-data from-video": (data_cli._parser, "from-video"),
}


def _parser_of(make, sub):
    parser = make()
    if sub is None:
        return parser
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return subparsers.choices[sub]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_flag_has_an_explanation_and_is_listed(command):
    parser = _parser_of(*COMMANDS[command])
    flags = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    assert flags
    for action in flags:
        assert action.help and action.help != argparse.SUPPRESS and len(action.help) >= 12, action.option_strings
    script, *sub = command.split()
    out = subprocess.run([os.path.join(BIN, script), *sub, "--help"], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert out.returncode == 0, out.stderr[-2000:]
    for action in flags:
        assert any(flag in out.stdout for flag in action.option_strings), action.option_strings
