"""Where a GEMM-bound forward pass spends its time, on the compiled engine.

Runs the large-batch schedule of :mod:`nplstm._numba` (BLAS products, compiled
elementwise work) step by step with a timer around each part, the same calls
``layer(x)`` makes, and prints the share of each: the input projection (one
BLAS product per chunk of steps), the recurrent product ``h @ W_hh.T`` (one BLAS
product per step), the elementwise step (one compiled call per step: gates,
activations, state update) and the rest (Python, allocation). The timers add
~0.1 µs a step. float32, one BLAS thread.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/breakdown.py \
        --config 100,64,128 --config 100,64,512 --config 1000,16,256
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import nplstm
from nplstm import _numba, cells


def breakdown(cell, T, B, H, repeats=5):
    """Seconds per forward pass for each part, medians over ``repeats`` passes,
    and the largest difference from ``layer(x)`` (must be 0: the same calls)."""
    cls = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}[cell]
    layer = cls(H, H, dtype=np.float32, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((T, B, H)).astype(np.float32)
    family, w = layer.family, layer._weights()[0][0]
    K, cw = _numba.kernels(), _numba.compiled(w)
    GH = cw.W_ihT.shape[1]
    size = min(T, max(1, cells.CHUNK_ELEMENTS // (GH * B)))

    def run(acc):
        start_all = time.perf_counter()
        h = np.zeros((B, H), np.float32)
        c = np.zeros((B, H), np.float32)
        y = np.empty((T, B, H), np.float32)
        ah = np.empty((B, GH), np.float32)
        buf = np.empty((size * B, GH), np.float32)
        lens = _numba._NO_LENGTHS
        for start in range(0, T, size):
            t0 = time.perf_counter()
            xp = _numba._project(cw, x[start:start + size], buf)
            acc["projection"] += time.perf_counter() - t0
            for s in range(xp.shape[0]):
                t0 = time.perf_counter()
                np.matmul(h, cw.W_hhT, ah)
                t1 = time.perf_counter()
                if family is cells.LSTM:
                    K.lstm_cells(xp[s], cw.b, ah, c, h, y, start + s, lens, True, None)
                elif family is cells.GRU:
                    K.gru_cells(xp[s], cw.b, ah, cw.b_hn, h, y, start + s, lens, None)
                else:
                    K.rnn_cells(xp[s], cw.b, ah, cw.relu, h, y, start + s, lens)
                t2 = time.perf_counter()
                acc["recurrent GEMM"] += t1 - t0
                acc["elementwise"] += t2 - t1
        acc["total"] += time.perf_counter() - start_all
        return y

    diff = float(np.abs(run({k: 0.0 for k in ("projection", "recurrent GEMM", "elementwise",
                                               "total")}) - layer(x)[0]).max())
    samples = []
    for _ in range(repeats):
        acc = dict.fromkeys(("projection", "recurrent GEMM", "elementwise", "total"), 0.0)
        run(acc)
        samples.append(acc)
    med = {k: float(np.median([s[k] for s in samples])) for k in samples[0]}
    med["rest"] = med["total"] - med["projection"] - med["recurrent GEMM"] - med["elementwise"]
    return med, diff


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", action="append", choices=("lstm", "gru", "rnn"))
    parser.add_argument("--config", action="append", metavar="T,B,H",
                        help="sequence length, batch (> 4: the GEMM schedule), hidden size")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    configs = [tuple(int(v) for v in c.split(",")) for c in
               (args.config or ["100,64,128", "100,64,512", "1000,16,256"])]
    print("config | projection | recurrent GEMM | elementwise | rest | total ms")
    for cell in args.cell or ["lstm"]:
        for T, B, H in configs:
            if B <= _numba.SMALL_BATCH:
                parser.error(f"--config {T},{B},{H}: batch must be > {_numba.SMALL_BATCH}, "
                             "the GEMM schedule")
            med, diff = breakdown(cell, T, B, H, args.repeats)
            assert diff == 0.0, diff
            share = {k: 100 * v / med["total"] for k, v in med.items()}
            print(f"{cell} T{T} B{B} H{H} | " + " | ".join(
                f"{share[k]:.0f}%" for k in ("projection", "recurrent GEMM", "elementwise",
                                            "rest")) + f" | {med['total'] * 1e3:.1f}")


if __name__ == "__main__":
    main()
