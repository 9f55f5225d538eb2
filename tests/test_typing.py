"""The package type-checks clean, and user code sees the types it should.

`python -m mypy src/nplstm` (config in pyproject.toml) must find no issue; a small
program written as a PyTorch user writes it must type-check with the precise
types a reader expects (a layer's state is ``(h, c)`` for an LSTM, one array
otherwise; ``double()`` returns the layer's own class; ``load_weights`` a dict of
arrays). Editors and type checkers read these annotations: a mistake is a bug.
"""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

USER_CODE = '''
import numpy as np
import nplstm
from typing_extensions import assert_type

x = np.zeros((7, 2, 3), np.float32)
lstm = nplstm.LSTM(3, 5, num_layers=2).eval()
out, (h, c) = lstm(x)
assert_type(out, np.ndarray)
assert_type(c, np.ndarray)
gru = nplstm.GRU.from_state_dict(nplstm.GRU(3, 5).state_dict()).double()
assert_type(gru, nplstm.GRU)
y, h_n = gru(x, None)
assert_type(h_n, np.ndarray)
h2, c2 = nplstm.LSTMCell(3, 5)(x[0])
assert_type(h2, np.ndarray)
assert_type(nplstm.RNNCell(3, 5).to("cpu")(x[0]), np.ndarray)
assert_type(nplstm.Linear(5, 1)(out), np.ndarray)
assert_type(lstm.trace(x), nplstm.Trace)
assert_type(lstm.trace(x).step(0), dict[str, np.ndarray])
assert_type(nplstm.load_weights("m.pt"), dict[str, np.ndarray])
assert_type(lstm.load_state_dict({}, strict=False), nplstm.IncompatibleKeys)
grads = lstm.backward(lstm.trace(x), np.ones_like(out))
assert_type(grads, nplstm.grad.Grads)
assert_type(grads.params, dict[str, np.ndarray])
nplstm.optim.Adam(lstm, lr=1e-3).step(grads.params)
assert_type(nplstm.losses.mse_loss(out, out), tuple[float, np.ndarray])
'''


def test_mypy_is_clean_and_user_code_sees_precise_types(tmp_path):
    pytest.importorskip("mypy")
    user = tmp_path / "user_code.py"
    user.write_text(USER_CODE)
    r = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
                        "src/nplstm", str(user)],
                       cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found" in r.stdout


def test_py_typed_ships():
    """PEP 561: the marker tells type checkers to read nplstm's own annotations."""
    assert (ROOT / "src" / "nplstm" / "py.typed").is_file()
