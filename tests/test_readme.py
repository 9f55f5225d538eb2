"""The README's Python examples run as written, and its commands exist."""

import pathlib
import re

import pytest

import nplstm
from nplstm.cli import SUBCOMMANDS

README = (pathlib.Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
RUNNABLE = [b for b in BLOCKS if b.startswith("import ")]


def test_readme_has_runnable_examples():
    assert len(RUNNABLE) >= 1


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.splitlines()[0][:40])
def test_readme_example_runs(block):
    if "torch" in block:
        pytest.importorskip("torch")
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102


def test_readme_commands_are_real_subcommands():
    for cmd in re.findall(r"`nplstm (\w+)", README):
        assert cmd in SUBCOMMANDS, cmd


def test_readme_snippets_use_public_names():
    for name in re.findall(r"nplstm\.([A-Za-z_]+)\(", README):
        assert hasattr(nplstm, name), name
