"""nplstm.from_keras against Keras itself: models built and run by Keras 3 (torch
backend, no TensorFlow), saved as .keras and .h5, loaded by nplstm in a subprocess
where keras, tensorflow and torch cannot be imported, matched to model.predict."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

import nplstm

sys.path.insert(0, os.path.dirname(__file__))
import keras_cases

HAS_OPTIONS = "activations" in inspect.signature(nplstm.LSTM).parameters
TOL = 1e-5  # float32, absolute
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
CASES = keras_cases.cases()
FORMATS = ("keras", "h5")


def _runnable(name):
    return HAS_OPTIONS or not CASES[name][2]


def run_without_keras(manifest, arrays, tmp):
    """Load and run every file in a subprocess that cannot import keras/tensorflow/torch."""
    paths = [os.path.join(tmp, n) for n in ("manifest.json", "inputs.npz", "outputs.npz")]
    with open(paths[0], "w") as f:
        json.dump(manifest, f)
    np.savez(paths[1], **arrays)
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", keras_cases.RUNNER, *paths],
                          check=False, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(paths[2] + ".errors.json") as f:
        errors = json.load(f)
    with np.load(paths[2]) as out:
        return dict(out), errors


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """``(keras outputs by case, nplstm outputs by key)`` for every case."""
    tmp = str(tmp_path_factory.mktemp("keras"))
    with warnings.catch_warnings():
        # Keras's own: its torch backend's Variable.__array__ lacks NumPy 2's copy keyword.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return _build_all(tmp)


def _build_all(tmp):
    manifest, arrays, expected = [], {}, {}
    for seed, (name, (build, masked, _, stateful)) in enumerate(sorted(CASES.items())):
        if not _runnable(name):
            continue
        model = keras_cases.randomize(build(), seed)
        calls = keras_cases.steps(name, masked, stateful, seed)
        for fmt in FORMATS:
            path = os.path.join(tmp, f"{name}.{fmt}")
            model.save(path)
        expected[name] = keras_cases.run_keras(model, calls)
        names = []
        for i, call in enumerate(calls):
            if call[0] == "reset":
                names.append("reset")
            else:
                arrays[f"{name}/{i}"] = call[1]
                names.append(f"{name}/{i}")
        for fmt in FORMATS:
            manifest.append({"key": f"{name}.{fmt}", "file": os.path.join(tmp, f"{name}.{fmt}"),
                             "calls": names})
    return expected, run_without_keras(manifest, arrays, tmp)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_predict(results, name, fmt):
    if not _runnable(name):
        pytest.skip("needs the layer options of CONTRACT-options (activations, "
                    "linear_before_reset)")
    expected, (got, errors) = results
    assert f"{name}.{fmt}" not in errors, errors.get(f"{name}.{fmt}")
    for k, outputs in enumerate(expected[name]):
        for j, want in enumerate(outputs):
            key = f"{name}.{fmt}/{k}/{j}"
            assert key in got, f"nplstm returned fewer outputs than Keras ({key})"
            assert got[key].shape == want.shape, key
            assert got[key].dtype == np.float32, key
            np.testing.assert_allclose(got[key], want, rtol=0, atol=TOL, err_msg=key)
        assert f"{name}.{fmt}/{k}/{len(outputs)}" not in got, "nplstm returned more outputs"
