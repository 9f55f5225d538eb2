"""The README's Python examples run as written, and its commands exist."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

import nplstm
from nplstm.cli import SUBCOMMANDS

ROOT = pathlib.Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
RUNNABLE = [b for b in BLOCKS if b.startswith("import ")]
NO_TORCH = "# deploy: no torch here"


def test_readme_examples_run_in_order(tmp_path, monkeypatch):
    """Each block starting with an import runs, in order, in one folder; the deploy
    block runs in a process where importing torch is impossible."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    assert len(RUNNABLE) >= 3 and sum(NO_TORCH in b for b in RUNNABLE) == 1
    for block in RUNNABLE:
        if NO_TORCH in block:
            code = "import sys; sys.modules['torch'] = None\n" + block
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
            r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                               text=True,
                               env=env)
            assert r.returncode == 0, r.stderr
        else:
            exec(compile(block, "README.md", "exec"), {})  # noqa: S102
    assert (tmp_path / "model.safetensors").stat().st_size > 0


def test_readme_commands_are_real_subcommands():
    for cmd in re.findall(r"`nplstm (\w+)", README):
        assert cmd in SUBCOMMANDS, cmd


def test_readme_snippets_use_public_names():
    for name in re.findall(r"nplstm\.([A-Za-z_]+)\(", README):
        assert hasattr(nplstm, name), name
