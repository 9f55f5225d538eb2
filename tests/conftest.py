"""Which engine the tests run (see nplstm._numba).

Every test module runs the NumPy path (the reference: its figures, workspaces
and per-gate agreement are stated for it), except
``test_numba*.py``, which runs the compiled ``[fast]`` engine, and sets the
engine itself where it compares the two. ``NPLSTM_TEST_ENGINE=numba`` (or
``auto``) runs the other modules on that engine instead, e.g. the gradient
tests on traces the kernels recorded (tests that compare against the NumPy
path's own figures, or its workspaces, are not meant for it).
"""

import os

import pytest


@pytest.fixture(autouse=True)
def _numpy_engine_unless_numba_tests(request, monkeypatch):
    if not os.path.basename(str(request.node.fspath)).startswith("test_numba"):
        monkeypatch.setenv("NPLSTM_ENGINE", os.environ.get("NPLSTM_TEST_ENGINE", "numpy"))
