"""Time one training step (forward + backward through time) of nplstm against torch.

Not a test: run it by hand, e.g.

    PYTHONPATH=src python benchmarks/train_step.py --cell lstm --cell gru --threads 1

For each (T, B, H) (input size = H), both runtimes get the same float32 weights,
input and output gradient; nplstm runs ``layer.trace`` + ``layer.backward``,
torch runs the forward and ``output.backward(dy)`` (parameter and input
gradients). Reports medians and the ratio nplstm / torch (above 1: nplstm is
slower), and the largest gradient difference as a sanity check.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

SIZES = [(50, 1, 32), (50, 16, 64), (100, 32, 128), (100, 64, 256)]


def _time(fn, repeats, min_time=0.02):
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        samples.append(elapsed / n)
    return statistics.median(samples)


def bench(cell, T, B, H, repeats):
    import torch

    import nplstm

    tcls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    ncls = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}[cell]
    t = tcls(H, H)
    ours = ncls(H, H)
    ours.load_state_dict(t.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, H)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    xt, dyt = torch.tensor(x, requires_grad=True), torch.tensor(dy)

    def ours_step():
        return ours.backward(ours.trace(x), dy)

    def torch_step():
        t.zero_grad()
        xt.grad = None
        t(xt)[0].backward(dyt)

    g = ours_step()
    torch_step()
    diff = max(float(np.max(np.abs(g.params[k] - p.grad.numpy())))
               for k, p in t.named_parameters())
    a, b = _time(ours_step, repeats), _time(torch_step, repeats)
    return {"cell": cell, "T": T, "B": B, "H": H, "nplstm_ms": a * 1e3, "torch_ms": b * 1e3,
            "ratio": a / b, "max_grad_diff": diff}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cell", action="append", choices=("lstm", "gru", "rnn"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", help="also write the rows as JSON")
    args = p.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    rows = []
    with threadpool_limits(args.threads):
        for cell in args.cell or ["lstm"]:
            for T, B, H in SIZES:
                rows.append(bench(cell, T, B, H, args.repeats))
                r = rows[-1]
                print(f"| {cell} | {T} | {B} | {H} | {r['nplstm_ms']:.2f} | "
                      f"{r['torch_ms']:.2f} | {r['ratio']:.2f} | {r['max_grad_diff']:.1e} |",
                      flush=True)
    if args.json:
        meta = {"machine": platform.processor() or platform.machine(),
                "threads": args.threads, "torch": torch.__version__, "numpy": np.__version__}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
