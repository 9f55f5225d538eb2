"""Throughput of nplstm.distributed.score: sequences per second on 1, 2, ... Dask workers.

    python benchmarks/dask_score.py                  # 20000 x L=100 x 128 -> LSTM(128, 128)
    python benchmarks/dask_score.py --sequences 4000 --repeats 2 --workers 1,2

Writes a Zarr store of random float32 sequences (N, L, H_in) to a temporary
folder, then for each worker count starts a LocalCluster of that many worker
processes (one thread each; distributed sets OPENBLAS_NUM_THREADS=1 in them)
and times ``score(layer, store, return_state=True)`` up to the final hidden
states ``h_n[-1]`` gathered here: read, score, gather, end to end. For
reference it also times the layer's own call on the same blocks in this
process on one BLAS thread (no Dask), and checks that every cluster's h_n
equals that one bit for bit. All clusters start first and warm up with one
untimed run (imports, the layer's copy on each worker); then each round times
in-process, 1 worker, 2 workers, ... back to back, so that on a shared machine
every contestant meets about the same load. The machine is named in the output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import zarr
from distributed import Client, LocalCluster
from threadpoolctl import threadpool_limits

import nplstm
from nplstm.distributed import _even_chunks, score

CELLS = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}


def make_store(path, N, L, H_in, chunk, seed=0):
    """(N, L, H_in) float32 standard normal, stored ``chunk`` sequences at a time."""
    store = zarr.open(path, mode="w", shape=(N, L, H_in), chunks=(chunk, L, H_in),
                      dtype="f4")
    rng = np.random.default_rng(seed)
    for a in range(0, N, chunk):
        n = min(chunk, N - a)
        store[a:a + n] = rng.standard_normal((n, L, H_in), dtype=np.float32)
    return store


def in_process(layer, store, chunks):
    """The layer's own call block by block here, one BLAS thread: (h_n[-1], seconds)."""
    t0 = time.perf_counter()
    with threadpool_limits(1):
        parts, a = [], 0
        for n in chunks:
            parts.append(layer(store[a:a + n], lengths=None)[1][0][-1])  # h_n[-1]: (n, H)
            a += n
    return np.concatenate(parts), time.perf_counter() - t0


def on_cluster(client, layer, path, batch_size):
    """One end-to-end run on ``client``: (h_n[-1] gathered here, seconds)."""
    t0 = time.perf_counter()
    _, state = score(layer, path, return_state=True, batch_size=batch_size, client=client)
    h_n = state[0] if isinstance(state, tuple) else state
    return client.compute(h_n[-1], sync=True), time.perf_counter() - t0  # (N, H)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm")
    p.add_argument("--sequences", type=int, default=20000)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--input-size", type=int, default=128)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=1024, help="sequences per task")
    p.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per worker count")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args(argv)
    N, L = a.sequences, a.length
    layer = CELLS[a.cell](a.input_size, a.hidden_size, batch_first=True, seed=0)
    print(f"{platform.processor() or platform.machine()}, {_cpu()}; python "
          f"{platform.python_version()}, numpy {np.__version__}")
    print(f"{layer!r} on N={N} sequences x L={L}, float32, {a.batch_size} per task")
    results = {"config": vars(a), "cpu": _cpu()}
    counts = [int(s) for s in a.workers.split(",")]
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        path = f"{tmp}/x.zarr"
        store = make_store(path, N, L, a.input_size, a.batch_size)
        clients = {w: stack.enter_context(Client(stack.enter_context(LocalCluster(
            n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0",
            scheduler_kwargs={"dashboard": False}))))  # ":0": no clash on port 8787
            for w in counts}
        runs = {f"{w} worker{'s' * (w > 1)}": [] for w in counts}
        runs["in process, no Dask"] = []
        for w, client in clients.items():  # warm-up: imports, the layer on each worker
            on_cluster(client, layer, path, a.batch_size)
        chunks = _even_chunks(N, a.batch_size)
        same = True
        for _ in range(a.repeats):  # round robin: each round sees the same load
            h, secs = in_process(layer, store, chunks)
            runs["in process, no Dask"].append(secs)
            for w, client in clients.items():
                got, secs = on_cluster(client, layer, path, a.batch_size)
                runs[f"{w} worker{'s' * (w > 1)}"].append(secs)
                same &= bool(np.array_equal(got, h))
        for what, times in runs.items():
            _report(what, N, times)
        results["runs"], results["bit_for_bit"] = runs, same
        print(f"h_n[-1] on every cluster == in process, bit for bit: {same}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if same else 1


def _report(what, N, times):
    med = statistics.median(times)
    print(f"  {what:22s} {N / med:8.0f} sequences/s  (median of {len(times)}: {med:.2f} s; "
          f"runs {', '.join(f'{t:.2f}' for t in times)} s)")


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor()
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                 if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                  if ln.startswith("flags")), [])
    ext = sorted({f for f in flags if f.startswith(("avx2", "avx512f", "fma"))})
    return f"{name} x {info.count('processor')} ({' '.join(ext)})"


if __name__ == "__main__":
    sys.exit(main())
