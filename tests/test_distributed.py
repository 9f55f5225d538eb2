"""nplstm.distributed.score: a batch split along N, scored on a 2-process Dask cluster.

Expected values: PyTorch's packed path (lengths) with the same weights, and the
layer's own call on the same blocks in this process (bit for bit).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")
from dask.core import get_dependencies
from helpers import TOL, T, assert_close, torch, twin
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import nplstm
from nplstm.distributed import score

N, L, H_IN, H = 23, 7, 3, 5
BLOCK = 6  # -> blocks of 6, 6, 6, 5


@pytest.fixture(scope="module")
def client():
    """One LocalCluster of 2 worker processes for the module, closed at its end.

    No dashboard, and the scheduler's small HTTP server on a free port: with
    ``dashboard_address=None`` it still tries port 8787 and warns (an error here)
    when another cluster on the machine holds it. The workers run the engine this
    process's tests run (``tests/conftest.py``): the module fixture starts before the
    per-test environment is set, so it is passed to them explicitly.
    """
    engine = os.environ.get("NPLSTM_TEST_ENGINE", "numpy")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=":0", scheduler_kwargs={"dashboard": False},
                                  env={"NPLSTM_ENGINE": engine},
                                  ) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _data(dtype, bf, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, L, H_IN) if bf else (L, N, H_IN)).astype(dtype)
    lengths = rng.integers(1, L + 1, N)
    lengths[0] = L  # pad_packed_sequence's total_length then gives all L steps
    return x, lengths


def _torch_packed(module, x, lengths, bf):
    packed = pack_padded_sequence(T(x), torch.tensor(lengths), batch_first=bf,
                                  enforce_sorted=False)
    with torch.no_grad():
        out, state = module(packed)
    return pad_packed_sequence(out, batch_first=bf, total_length=L)[0], state


def _blockwise_here(layer, x, lengths, bf):
    """The layer's own call on each block of BLOCK sequences, in this process."""
    outs, states = [], []
    for a in range(0, N, BLOCK):
        part = x[a:a + BLOCK] if bf else x[:, a:a + BLOCK]
        out, state = layer(part, lengths=lengths[a:a + BLOCK])
        outs.append(out)
        states.append(state if isinstance(state, tuple) else (state,))
    return (np.concatenate(outs, axis=0 if bf else 1),
            tuple(np.concatenate(s, axis=1) for s in zip(*states)))


CASES = [  # kind, kwargs, batch_first, dtype
    ("lstm", {"num_layers": 2, "bidirectional": True, "proj_size": 3}, True, np.float64),
    ("gru", {"num_layers": 2}, False, np.float32),
    ("rnn", {"nonlinearity": "relu", "bidirectional": True}, True, np.float64),
]


@pytest.mark.parametrize("kind, kwargs, bf, dtype", CASES)
@pytest.mark.parametrize("scatter", [True, False], ids=["scatter", "delayed"])
def test_cluster_equals_one_process_and_torch(client, kind, kwargs, bf, dtype, scatter):
    layer, theirs = twin(kind, H_IN, H, batch_first=bf, dtype=dtype, **kwargs)
    x, lengths = _data(dtype, bf)
    output, state = score(layer, x, lengths=lengths, return_state=True, batch_size=BLOCK,
                          client=client if scatter else None)
    states = state if isinstance(state, tuple) else (state,)
    assert output.chunks[0 if bf else 1] == (6, 6, 6, 5)
    got = client.compute([output, *states], sync=True)  # on the 2 worker processes
    want_out, want_states = _blockwise_here(layer, x, lengths, bf)
    for a, b in zip(got, (want_out, *want_states)):
        assert a.dtype == b.dtype and np.array_equal(a, b)  # bit for bit
    t_out, t_state = _torch_packed(theirs, x, lengths, bf)
    assert_close(got[0], t_out, dtype, "output")
    t_states = t_state if isinstance(t_state, tuple) else (t_state,)
    assert_close(tuple(got[1:]), t_states, dtype, "state")
    whole = layer(x, lengths=lengths)[0]  # one call on the whole batch
    assert np.max(np.abs(got[0] - whole)) <= TOL[dtype]


def test_zarr_store_and_linear_head(client, tmp_path):
    """A store chunked 4 sequences at a time, read by the workers; blocks follow it."""
    layer, theirs = twin("lstm", H_IN, H, batch_first=True)
    x, lengths = _data(np.float64, True, seed=1)
    path = str(tmp_path / "x.zarr")
    store = zarr.open(path, mode="w", shape=x.shape, chunks=(4, 2, H_IN), dtype=x.dtype)
    store[:] = x
    output, (h_n, _c_n) = score(layer, path, lengths=lengths, return_state=True,
                               batch_size=8)
    assert output.chunks[0] == (8, 8, 7)
    fc = nplstm.Linear(H, 2, dtype=np.float64, seed=3)
    y = score(fc, h_n[-1])  # (N, 2): the head on each block of final states
    got_out, got_h, got_y = client.compute([output, h_n, y], sync=True)
    t_out, (t_h, _) = _torch_packed(theirs, x, lengths, True)
    assert_close(got_out, t_out, np.float64, "output")
    assert_close(got_h, t_h, np.float64, "h_n")
    t_fc = torch.nn.Linear(H, 2).double()
    t_fc.load_state_dict({k: T(v) for k, v in fc.state_dict().items()})
    assert_close(got_y, t_fc(t_h[-1]), np.float64, "head")


def test_dask_input_and_dask_lengths_rechunked(client):
    layer, _ = twin("gru", H_IN, H, dtype=np.float32)
    x, lengths = _data(np.float32, False, seed=2)
    dx = da.from_array(x, chunks=(L, 10, H_IN))
    dl = da.from_array(lengths, chunks=7)  # not x's chunks: rechunked to them
    out = score(layer, dx, lengths=dl, client=client)
    assert out.chunks[1] == (10, 10, 3)
    got = client.compute(out, sync=True)
    assert_close(got, layer(x, lengths=lengths)[0], np.float32, "output")


def test_layer_is_copied_when_scored():
    layer, _ = twin("rnn", H_IN, H)
    x, _ = _data(np.float64, False)
    want = layer(x)[0]
    out = score(layer, x, batch_size=BLOCK)
    layer.load_state_dict({k: v + 1 for k, v in layer.state_dict().items()})
    assert np.array_equal(out.compute(scheduler="sync"), want)


def test_import_nplstm_does_not_import_dask():
    code = "import sys, nplstm; assert not {'dask', 'distributed', 'zarr'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def _layer(**kwargs):
    return nplstm.LSTM(H_IN, H, seed=0, **kwargs)


X = np.zeros((L, N, H_IN))
BAD = [  # (call, error, match)
    (lambda: score(_layer(), da.from_array(X, chunks=(3, N, H_IN))), ValueError,
     r"chunked along time \(axis 0"),
    (lambda: score(_layer(batch_first=True), da.zeros((N, L, H_IN), chunks=(5, L, 1))),
     ValueError, r"chunked along features \(axis 2"),
    (lambda: score(_layer(), np.zeros((L, N, 4))), ValueError,
     "input_size. Expected 3, got 4"),
    (lambda: score(_layer(), np.zeros((L, H_IN))), ValueError, "unbatched input has no batch"),
    (lambda: score(_layer(), X, batch_first=True), ValueError,
     r"batch_first=True contradicts the layer's batch_first=False.*\(L, N, H_in\)"),
    (lambda: score(_layer(), np.zeros((L, 0, H_IN))), ValueError, "holds no sequences"),
    (lambda: score(_layer(), X, lengths=np.ones(N - 1, int)), ValueError,
     rf"lengths must have shape \({N},\).*got shape \({N - 1},\)"),
    (lambda: score(_layer(), X, lengths=np.ones(N)), TypeError, "lengths must be integers"),
    (lambda: score(_layer(), X, lengths=da.ones(N + 1, dtype=int)), ValueError,
     rf"lengths must have shape \({N},\)"),
    (lambda: score(_layer(), X, lengths=da.ones(N)), TypeError, "lengths must be integers"),
    (lambda: score(_layer(), X, lengths=np.full(N, L + 1)), ValueError,
     f"between 1 and the sequence length {L}"),
    (lambda: score(_layer(), X, batch_size=0), ValueError, "batch_size must be"),
    (lambda: score(_layer(), X, return_state=1), TypeError, "return_state must be a bool"),
    (lambda: score(_layer(), X, batch_first="yes"), TypeError, "batch_first must be a bool"),
    (lambda: score("lstm", X), TypeError, "model must be an nplstm layer"),
    (lambda: score(nplstm.Linear(4, 2), X), ValueError,
     r"x of shape \(7, 23, 3\) does not fit Linear\(in_features=4"),
    (lambda: score(nplstm.Linear(3, 2), X, lengths=np.ones(N, int)), ValueError,
     "lengths= is for recurrent layers"),
    (lambda: score(nplstm.Linear(3, 2), X, return_state=True), ValueError,
     "return_state= is for recurrent layers"),
    (lambda: score(lambda a: a.sum(), X), TypeError, "must return one array with the batch"),
    (lambda: score(nplstm.Linear(3, 2), np.zeros(3), batch_first=False), ValueError,
     r"must have a batch axis 1, got 1-D x of shape \(3,\)"),
]


@pytest.mark.parametrize("call, error, match", BAD)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_zarr_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Zarr store at"):
        score(_layer(), str(tmp_path / "missing.zarr"))
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.zeros(name="x", shape=(L, N, H_IN), dtype="f8")
    with pytest.raises(TypeError, match=r"is a group, not an array.*\['x'\]"):
        score(_layer(), str(tmp_path / "g.zarr"))


def test_errors_found_on_workers_fail_the_compute():
    """What cannot be checked without computing: dask lengths, a module's block output."""
    out = score(_layer(), X, lengths=da.from_array(np.full(N, L + 1)))
    with pytest.raises(ValueError, match="between 1 and the sequence length"):
        out.compute(scheduler="sync")

    def flaky(a):  # fine on an empty batch, drops the batch otherwise
        return a if a.shape[0] == 0 else a[:1]

    with pytest.raises(ValueError, match=r"expected \(23, 7, 3\), as on an empty batch"):
        score(flaky, np.zeros((N, L, H_IN))).compute(scheduler="sync")


def _score_tasks(graph, prefix):
    """The keys of the tasks that call the layer, one per block."""
    return [k for k in graph if isinstance(k, tuple) and k[0].startswith(prefix)
            and "-output-" not in k[0]]


def _layers_in(graph, cls):
    return [k for k, v in graph.items() if isinstance(getattr(v, "value", v), cls)]


def test_layer_is_one_key_every_task_refers_to():
    layer = nplstm.GRU(H_IN, H, seed=0)
    graph = dict(score(layer, X, batch_size=BLOCK).__dask_graph__())
    keys = _layers_in(graph, nplstm.GRU)
    assert len(keys) == 1  # the layer's copy, once
    tasks = _score_tasks(graph, "gru-score-")
    assert len(tasks) == 4  # one task per block: 6, 6, 6, 5 sequences
    assert all(keys[0] in get_dependencies(graph, k) for k in tasks)


def test_scatter_leaves_the_layer_out_of_the_graph(client):
    """With a client the graph only names the layer: its copy is on the cluster."""
    out = score(nplstm.RNN(H_IN, H, seed=5), X, batch_size=BLOCK, client=client)
    graph = dict(out.__dask_graph__())
    assert not _layers_in(graph, nplstm.RNN)
    tasks = _score_tasks(graph, "rnn-score-")
    # A future is a dependency the graph names without holding: Task.dependencies.
    shared = set.intersection(*(set(graph[k].dependencies) for k in tasks))
    held = [k for k, workers in client.who_has().items() if k in shared and workers]
    assert len(tasks) == 4 and len(held) == 1 and str(held[0]).startswith("RNN-")
