"""Which engine the tests run (see nplstm._numba).

Every test module runs the NumPy path (the reference: its invariants, such as a
trace reproducing the forward pass bit for bit, are stated for it), except
``test_numba*.py``, which runs the compiled ``[fast]`` engine, and sets the
engine itself where it compares the two.
"""

import os

import pytest


@pytest.fixture(autouse=True)
def _numpy_engine_unless_numba_tests(request, monkeypatch):
    if not os.path.basename(str(request.node.fspath)).startswith("test_numba"):
        monkeypatch.setenv("NPLSTM_ENGINE", "numpy")
