"""``nplstm train``: train a model by hand-written backprop through time, on real data.

forecast: one-step-ahead forecast of the weekly Mauna Loa CO2 record (bundled,
public domain) against the naive last-value forecast. chars: a character-level
LSTM language model on a text (default: a bundled Shakespeare excerpt).
memory: an LSTM and a plain tanh RNN on a long-delay memory task (Bengio et
al. 1994's two-sequence problem, as in Hochreiter & Schmidhuber 1997, 5.3).
All write weights that torch.nn.LSTM + nn.Linear load (safetensors, keys
rnn.* and fc.*), a loss log (CSV) and, with --plot, pictures of learning.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path

from . import CLIError

EPILOG = """\
examples:
  nplstm train forecast --plot                     # CO2, ~20 s, pictures in ./train-forecast
  nplstm train forecast --epochs 3 --cell gru --out /tmp/f
  nplstm train chars --plot                        # bundled Shakespeare excerpt
  nplstm train chars mybook.txt --epochs 20 --hidden 256
  nplstm train memory --plot                       # LSTM vs RNN, pictures in ./train-memory
  nplstm train memory --delay 20 --forget-bias 0   # shorter delay, PyTorch's init
"""


def register(sub):
    p = sub.add_parser("train", help="train an LSTM by hand-written backprop on real data",
                       description=__doc__.split("\n\n")[1], epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = p.add_subparsers(dest="task", metavar="TASK")
    f = tasks.add_parser("forecast", help="one-step-ahead CO2 forecast vs the naive baseline")
    _common(f, task="forecast", epochs=10, steps=50, hidden=16, lr=0.005, window=52, batch=32, clip=1.0,
            plots="loss.png, saturation.png, gradflow.png (an RNN trained alike beside the "
            "model) and forecast.png")
    c = tasks.add_parser("chars", help="character-level LSTM language model")
    c.add_argument("file", nargs="?", help="UTF-8 text (default: bundled Shakespeare)")
    _common(c, task="chars", epochs=6, steps=100, hidden=128, lr=0.005, window=64, batch=32, clip=5.0,
            plots="loss.png and saturation.png")
    c.add_argument("--sample", type=int, default=200, metavar="N",
                   help="characters sampled after each epoch (default: 200; 0: none)")
    c.add_argument("--temperature", type=float, default=0.8,
                   help="sampling temperature: logits / T (default 0.8)")
    m = tasks.add_parser(
        "memory", help="LSTM vs plain RNN: remember the first input across a delay",
        description="Bengio, Simard & Frasconi (1994)'s two-sequence problem, as "
        "Hochreiter & Schmidhuber (1997, section 5.3, experiment 3a) ran it: the first "
        "input is the class (+1 or -1), then DELAY inputs of Gaussian noise (variance "
        "0.2); the class is read at the last step (cross-entropy over 2 logits; chance: "
        "50%, ln 2). An LSTM and a tanh RNN of the same size train on the same batches "
        "with the same Adam for the same steps. Saves the LSTM.")
    _common(m, task="memory", epochs=6, steps=100, hidden=16, lr=0.01, window=None, batch=32,
            clip=1.0, cell=False, plots="memory.png (loss, accuracy and the gradient "
            "reaching each step, LSTM beside RNN)")
    m.add_argument("--delay", type=int, default=100,
                   help="noise steps between the class and the loss (default 100)")
    m.add_argument("--forget-bias", type=float, default=3.0,
                   help="added to the LSTM's forget-gate bias at initialisation, so its "
                   "cell starts remembering (default 3.0; 0: PyTorch's initialisation)")
    for q, task in ((f, "forecast"), (c, "chars"), (m, "memory")):
        q.set_defaults(func=run, task=task)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _common(p, **d):
    p.add_argument("--epochs", type=int, default=d["epochs"], help=f"(default {d['epochs']})")
    p.add_argument("--steps", type=int, default=d["steps"],
                   help=f"optimizer steps per epoch (default {d['steps']})")
    p.add_argument("--hidden", type=int, default=d["hidden"],
                   help=f"hidden_size (default {d['hidden']})")
    if d.get("cell", True):
        p.add_argument("--layers", type=int, default=1, help="num_layers (default 1)")
        p.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm")
    p.add_argument("--lr", type=float, default=d["lr"], help=f"Adam's lr (default {d['lr']})")
    if d["window"] is not None:
        p.add_argument("--window", type=int, default=d["window"],
                       help=f"steps per training sequence (default {d['window']})")
    p.add_argument("--batch", type=int, default=d["batch"], help=f"(default {d['batch']})")
    p.add_argument("--clip", type=float, default=d["clip"],
                   help=f"clip_grad_norm_ max_norm (default {d['clip']}; 0: off)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the initial weights and the batches (default 0)")
    p.add_argument("--out", metavar="DIR", default=f"train-{d['task']}",
                   help=f"output folder (default ./train-{d['task']})")
    p.add_argument("--plot", action="store_true",
                   help=f"also save {d['plots']}")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads (default 1: the matrices are small, and more threads "
                   "only contend; needs threadpoolctl, in nplstm[train])")


def _check(args):
    for name in ("epochs", "steps", "hidden", "layers", "window", "batch", "threads", "delay"):
        if getattr(args, name, 1) < 1:
            raise CLIError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if not 0 < args.lr < math.inf:
        raise CLIError(f"--lr must be a finite number > 0, got {args.lr}")
    if not args.clip >= 0:  # inf: no clipping, as torch's clip_grad_norm_
        raise CLIError(f"--clip must be >= 0, got {args.clip}")
    if not math.isfinite(getattr(args, "forget_bias", 0.0)):
        raise CLIError(f"--forget-bias must be a finite number, got {args.forget_bias}")
    if getattr(args, "sample", 0) < 0:
        raise CLIError(f"--sample must be >= 0, got {args.sample}")
    if not 0 < getattr(args, "temperature", 1.0) < math.inf:
        raise CLIError(f"--temperature must be a finite number > 0, got {args.temperature}")


class Progress:
    """tqdm when installed (``pip install 'nplstm[train]'``), else one line per epoch."""

    def __init__(self, total, desc, enabled):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr,
                                leave=False, dynamic_ncols=True)
            except ImportError:
                pass
        self.start, self.done = time.perf_counter(), 0

    def update(self, loss):
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        return self.done / max(time.perf_counter() - self.start, 1e-9)


def run(args):
    _check(args)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"--out {out}: cannot make this folder ({exc.strerror})") from None
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("--plot needs matplotlib: pip install 'nplstm[plot]'") from None
    from . import train_tasks

    with _blas_threads(args.threads):
        return getattr(train_tasks, args.task)(args, out, Progress, _report)


def _blas_threads(n):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n)


def _report(out, model, meta, log, plots):
    """Save weights, config, loss log and plots; print where they went."""
    from .. import save_weights

    save_weights(model.state_dict(), out / "model.safetensors")
    (out / "model.json").write_text(json.dumps(meta, indent=1))
    keys = list(log)
    lines = [",".join(keys)] + [",".join(f"{v:.6g}" for v in row) for row in zip(*log.values())]
    (out / "loss.csv").write_text("\n".join(lines) + "\n")
    for name, fig in plots.items():
        fig.savefig(out / name, dpi=110)
    files = ["model.safetensors", "model.json", "loss.csv", *plots]
    print(f"wrote {', '.join(str(out / f) for f in files)}")
    name = type(model.rnn).__name__
    print(f"load in PyTorch: sd = safetensors.torch.load_file('{out / 'model.safetensors'}'); "
          f"nn.{name}(...).load_state_dict({{k[4:]: v for k, v in sd.items() "
          f"if k.startswith('rnn.')}}); nn.Linear likewise with 'fc.'")
    return 0
