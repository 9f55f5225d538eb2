"""The package type-checks clean: `python -m mypy src/nplstm` (config in pyproject.toml).

Editors and type checkers read the annotations of the public API (layers, cells,
Linear, Trace, io); a mistake there is a bug users see, so CI holds mypy to zero errors.
"""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_mypy_is_clean(tmp_path):
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path),
                        "src/nplstm"],
                       cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found" in r.stdout


def test_py_typed_ships():
    """PEP 561: the marker tells type checkers to read nplstm's own annotations."""
    assert (ROOT / "src" / "nplstm" / "py.typed").is_file()
