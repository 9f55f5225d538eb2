"""Where a GEMM-bound forward pass spends its time, on the compiled engine.

Runs the large-batch schedule of :mod:`nplstm._numba` step by step from Python
with a timer around each part, the way its fallback loop (``_gemm_steps``) does:
``np.matmul`` for the products, the very BLAS routine the compiled loop calls, and
the compiled elementwise kernel, so the output equals ``layer(x)`` bit for bit.
It prints the share of each part: the input projection (one BLAS product per chunk
of steps), the recurrent product ``h @ W_hh.T`` (one BLAS product per step), the
elementwise step (gates, activations, state update) and the rest (the Python
between the calls, which the compiled loop does without). The timers add ~0.1 µs
a step. float32, one BLAS thread.

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


def _config(text):
    """``"T,B,H"`` -> ``(T, B, H)``: three positive integers, a batch above the small-batch
    schedule's; else an argparse error (a clean message and exit code 2, no traceback)."""
    try:
        T, B, H = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected T,B,H, three integers (e.g. 100,64,128)") from None
    if min(T, B, H) < 1:
        raise argparse.ArgumentTypeError(f"{text}: T, B and H must be at least 1")
    if B <= _numba.SMALL_BATCH:
        raise argparse.ArgumentTypeError(
            f"{text}: batch must be > {_numba.SMALL_BATCH}, the GEMM schedule")
    return T, B, H


def _positive(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", action="append", choices=("lstm", "gru", "rnn"),
                        help="cell type (repeatable; default: lstm)")
    parser.add_argument("--config", action="append", metavar="T,B,H", type=_config,
                        help="sequence length, batch (> 4: the GEMM schedule), hidden size "
                             "(repeatable; default: 100,64,128 100,64,512 1000,16,256)")
    parser.add_argument("--repeats", type=_positive, default=5,
                        help="timed passes per configuration; the medians are shown "
                             "(default: 5)")
    args = parser.parse_args(argv)
    try:
        compiled = _numba.enabled()
    except (ImportError, ValueError) as e:  # NPLSTM_ENGINE=numba without numba, or unknown
        parser.error(str(e))
    if not compiled:
        parser.error("times the compiled engine: needs the [fast] extra (numba) and "
                     "NPLSTM_ENGINE unset, 'auto' or 'numba'")
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    configs = args.config or [(100, 64, 128), (100, 64, 512), (1000, 16, 256)]
    print("config | projection | recurrent GEMM | elementwise | rest | total ms")
    for cell in args.cell or ["lstm"]:
        for T, B, H in configs:
            med, diff = breakdown(cell, T, B, H, args.repeats)
            if diff != 0.0:
                raise SystemExit(f"{cell} T{T} B{B} H{H}: the replay differs from layer(x) "
                                 f"by {diff:.3g}; it no longer makes the layer's calls")
            share = {k: 100 * v / med["total"] for k, v in med.items()}
            print(f"{cell} T{T} B{B} H{H} | " + " | ".join(
                f"{share[k]:.0f}%" for k in ("projection", "recurrent GEMM", "elementwise",
                                            "rest")) + f" | {med['total'] * 1e3:.1f}")

if __name__ == "__main__":
    main()
