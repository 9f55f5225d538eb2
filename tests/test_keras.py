"""nplstm.from_keras against Keras itself: models built and run by Keras 3 (torch
backend, no TensorFlow), saved as .keras and .h5, loaded by nplstm in a subprocess
where keras, tensorflow and torch cannot be imported, matched to model.predict."""

from __future__ import annotations

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

TOL = 1e-5  # float32, absolute
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
CASES = keras_cases.cases()
FORMATS = ("keras", "h5")


#: nplstm's engines (nplstm._numba): the NumPy path, and the default (numba when installed).
ENGINES = ("numpy", "auto")


def run_without_keras(manifest, arrays, tmp, engine):
    """Load and run every file in a subprocess that cannot import keras/tensorflow/torch."""
    paths = [os.path.join(tmp, n) for n in ("manifest.json", "inputs.npz",
                                            f"outputs_{engine}.npz")]
    with open(paths[0], "w") as f:
        json.dump(manifest, f)
    np.savez(paths[1], **arrays)
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
               NPLSTM_ENGINE=engine)
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
    for seed, (name, (build, masked, stateful)) in enumerate(sorted(CASES.items())):
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
    return expected, {e: run_without_keras(manifest, arrays, tmp, e) for e in ENGINES}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_predict(results, name, fmt, engine):
    expected, runs = results
    got, errors = runs[engine]
    assert f"{name}.{fmt}" not in errors, errors.get(f"{name}.{fmt}")
    for k, outputs in enumerate(expected[name]):
        for j, want in enumerate(outputs):
            key = f"{name}.{fmt}/{k}/{j}"
            assert key in got, f"nplstm returned fewer outputs than Keras ({key})"
            assert np.all(np.isfinite(want)), f"{key}: Keras's output is not finite"
            assert np.abs(want).max() > 1e-3, f"{key}: Keras's output is all zero"
            assert got[key].shape == want.shape, key
            assert got[key].dtype == np.float32, key
            np.testing.assert_allclose(got[key], want, rtol=0, atol=TOL, err_msg=key)
        assert f"{name}.{fmt}/{k}/{len(outputs)}" not in got, "nplstm returned more outputs"


def _quiet():
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
    return w


def test_in_memory_model():
    """A keras.Model object is accepted as well as a file."""
    w = _quiet()
    try:
        model = keras_cases.randomize(CASES["masked_stack"][0](), 7)
        x = keras_cases.inputs(7, masked=True)
        want = model.predict(x, verbose=0)
        ours = nplstm.from_keras(model)
    finally:
        w.__exit__(None, None, None)
    np.testing.assert_allclose(ours(x), want, rtol=0, atol=TOL)


def test_float64_model():
    """A float64 Keras model runs in float64 and matches within 1e-12.

    LSTM and GRU only: Keras's own float64 Dense, SimpleRNN and masked paths
    (torch backend, Keras 3.15) differ from the float64 equations by ~1e-7
    (measured), while nplstm's Linear/RNN equal torch's and its masks equal runs
    on the unmasked steps alone within 1e-12 (test_keras_layers)."""
    from keras import layers as kl

    w = _quiet()
    try:
        inp = keras.Input((keras_cases.L, keras_cases.F), dtype="float64")
        x = kl.Bidirectional(kl.GRU(4, return_sequences=True, dtype="float64"),
                             dtype="float64")(inp)
        y = kl.LSTM(5, go_backwards=True, dtype="float64")(x)
        model = keras_cases.randomize(keras.Model(inp, y), 8)
        x = keras_cases.inputs(8).astype(np.float64)
        want = model.predict(x, verbose=0)
        ours = nplstm.from_keras(model)
    finally:
        w.__exit__(None, None, None)
    got = ours(x)
    assert want.dtype == got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_readme_keras_section_runs(tmp_path):
    """The README's Keras blocks as printed: saved by Keras, run with keras,
    tensorflow and torch impossible to import."""
    import re

    with open(os.path.join(os.path.dirname(SRC), "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme.split("## Keras models without Keras", 1)[1].split("\n## ", 1)[0]
    train, deploy = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    env = dict(os.environ, PYTHONPATH=SRC, KERAS_BACKEND="torch",
               PYTHONWARNINGS="ignore::DeprecationWarning")
    proc = subprocess.run([sys.executable, "-c", train], cwd=tmp_path, env=env, check=False,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    block = keras_cases.RUNNER.split("import json")[0]  # the import blocker
    proc = subprocess.run([sys.executable, "-c", block + deploy], cwd=tmp_path, env=env,
                          check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert "\n".join(lines[:-1]) in deploy.replace("# ", "")  # the repr, as printed
    assert float(lines[-1]) < TOL
