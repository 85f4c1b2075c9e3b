"""The import contracts of `.importlinter` hold, and they would catch a wrong-way import (BUILD.md "Layout")."""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def _lint(root):
    env = dict(os.environ, PYTHONPATH=root)
    return subprocess.run([LINT, "--no-cache", os.path.join(root, ".importlinter")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_project_keeps_its_import_contracts():
    out = _lint(REPO)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "0 broken" in out.stdout


PACKAGES = ("sqair_tf", "data_pipelines", "trainers", "evaluation", "serving", "tools")


@pytest.mark.parametrize("module, wrong_import, expected", [
    ("sqair_tf/model.py", "from data_pipelines import preview", "sqair_tf.model -> data_pipelines.preview"),
    ("trainers/trainer.py", "from evaluation import figures", "trainers.trainer -> evaluation.figures"),
    ("serving/export.py", "from evaluation import evaluator", "serving.export -> evaluation.evaluator"),
])
def test_a_wrong_way_import_breaks_the_contract(tmp_path, module, wrong_import, expected):
    root = str(tmp_path / "copy")
    for name in PACKAGES:
        shutil.copytree(os.path.join(REPO, name), os.path.join(root, name),
                        ignore=shutil.ignore_patterns("*.npz", "pretrained_models", "__pycache__"))
    shutil.copy(os.path.join(REPO, ".importlinter"), root)
    with open(os.path.join(root, module), "a") as f:
        f.write(f"\n\ndef _wrong_way():\n    {wrong_import}  # noqa: F401\n")
    out = _lint(root)
    assert out.returncode != 0 and "1 broken" in out.stdout
    assert expected in out.stdout
