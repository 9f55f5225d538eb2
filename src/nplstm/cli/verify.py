"""``nplstm verify``: nplstm against PyTorch over a grid of configurations.

Runs every combination of layers, directions, batch_first, proj_size, bias,
unbatched input and zero/given initial state, in float32 and float64, with
random non-zero weights; prints the largest differences and exits 1 if any
exceeds the tolerance (float64 1e-12, float32 1e-5).
"""

from __future__ import annotations

import argparse
import itertools
import warnings

import numpy as np

from . import CLIError

EPILOG = """\
examples:
  nplstm verify                          # the whole grid, LSTM, GRU and RNN
  nplstm verify --cell gru -v            # one row per GRU configuration
  nplstm verify --cell lstm --num-layers 2 --bidirectional --proj-size 2 --dtype float32
  nplstm verify --weights model.pt --prefix lstm. --cell lstm   # your own state_dict
"""

TOL = {"float64": 1e-12, "float32": 1e-5}
OPTIONS = ("num_layers", "bidirectional", "batch_first", "proj_size", "bias")
FROM_FILE = ("num_layers", "bidirectional", "proj_size", "bias")  # what --weights decides


def register(sub):
    p = sub.add_parser("verify", help="compare nplstm with PyTorch over a grid of "
                       "configurations; exit 1 on any mismatch",
                       description=__doc__.split("\n\n")[1], epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), action="append",
                   help="cell type (repeatable; default: all three)")
    one = p.add_argument_group("one configuration (any of these narrows the grid to it)")
    one.add_argument("--num-layers", type=int)
    one.add_argument("--bidirectional", action="store_true", default=None)
    one.add_argument("--batch-first", action="store_true", default=None)
    one.add_argument("--proj-size", type=int, help="LSTM only")
    one.add_argument("--no-bias", dest="bias", action="store_false", default=None)
    one.add_argument("--unbatched", action="store_true", default=None)
    one.add_argument("--with-state", action="store_true", default=None,
                     help="pass random initial states")
    one.add_argument("--dtype", choices=("float32", "float64"))
    p.add_argument("--weights", metavar="FILE",
                   help="a saved state_dict (.pt/.pth/.safetensors/.npz): verify those weights")
    p.add_argument("--prefix", default="", help="key prefix in --weights, e.g. 'lstm.'")
    p.add_argument("--input-size", type=int, default=3, help="(default: 3)")
    p.add_argument("--hidden-size", type=int, default=5, help="(default: 5)")
    p.add_argument("--seq-len", type=int, default=7, help="(default: 7)")
    p.add_argument("--batch", type=int, default=2, help="(default: 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true", help="one row per configuration")
    p.set_defaults(func=run)


def _torch():
    try:
        import torch
    except ImportError:
        raise CLIError("verify compares with PyTorch, which is not installed: "
                       "pip install 'nplstm[torch]'") from None
    return torch


def grid(args):
    """Every configuration to run, as dicts."""
    fixed = {k: getattr(args, k) for k in OPTIONS + ("unbatched", "with_state", "dtype")
             if getattr(args, k) is not None}
    axes = {"num_layers": (1, 2), "bidirectional": (False, True), "batch_first": (False, True),
                "proj_size": (0, 2), "bias": (True, False), "unbatched": (False, True),
                "with_state": (False, True), "dtype": ("float64", "float32")}
    for key, value in fixed.items():
        axes[key] = (value,)
    out = []
    for cell in args.cell or ("lstm", "gru", "rnn"):
        for values in itertools.product(*axes.values()):
            cfg = dict(zip(axes, values), cell=cell)
            if cfg["proj_size"] and cell != "lstm":
                if "proj_size" in fixed:
                    raise CLIError(f"--proj-size is an LSTM option, not {cell}'s")
                continue
            if cfg["proj_size"] >= args.hidden_size:  # the grid's proj 2 needs hidden >= 3
                continue
            out.append(cfg)
    return out


def compare(cfg, sizes, state_dict=None, prefix="", seed=0):
    """Max |diff| of output and each state between nplstm and PyTorch for one config."""
    import nplstm

    torch = _torch()
    h_in, hidden, L, N = sizes
    dtype = np.dtype(cfg["dtype"])
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    opts = {k: cfg[k] for k in OPTIONS if not (k == "proj_size" and cfg["cell"] != "lstm")}
    t_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg["cell"]]
    ours_cls = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}[cfg["cell"]]
    if state_dict is None:
        theirs = t_cls(h_in, hidden, **opts).to(tdtype)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in theirs.parameters():  # U(-1, 1): no zero bias hides a bug
                p.copy_(torch.rand(p.shape, generator=g, dtype=tdtype) * 2 - 1)
        ours = ours_cls(h_in, hidden, **opts, dtype=dtype)
        ours.load_state_dict(theirs.state_dict())
    else:
        ours = ours_cls.from_state_dict(state_dict, prefix, dtype=dtype,
                                        batch_first=cfg["batch_first"])
        opts = {k: getattr(ours, k) for k in OPTIONS if k != "proj_size" or cfg["cell"] == "lstm"}
        h_in, hidden = ours.input_size, ours.hidden_size
        theirs = t_cls(h_in, hidden, **opts).to(tdtype)
        theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    rng = np.random.default_rng(seed)
    if cfg["unbatched"]:
        shape = (L, h_in)
    else:
        shape = (N, L, h_in) if ours.batch_first else (L, N, h_in)
    x = rng.uniform(-1, 1, shape).astype(dtype)
    hx = None
    if cfg["with_state"]:
        batch = () if cfg["unbatched"] else (N,)
        shapes = ours._state_shapes(batch)
        hx = tuple(rng.uniform(-1, 1, s).astype(dtype) for s in shapes)
        hx = hx if cfg["cell"] == "lstm" else hx[0]
    t_hx = None if hx is None else (tuple(torch.from_numpy(a) for a in hx)
                                    if isinstance(hx, tuple) else torch.from_numpy(hx))
    got = ours(x, hx)
    with torch.no_grad(), warnings.catch_warnings():
        # PyTorch notes that its oneDNN kernel lacks proj_size; not the user's concern.
        warnings.filterwarnings("ignore", "LSTM with projections is not supported")
        want = theirs(torch.from_numpy(x), t_hx)
    diffs = {"output": float(np.max(np.abs(got[0] - want[0].numpy())))}
    states = zip(got[1], want[1]) if cfg["cell"] == "lstm" else [(got[1], want[1])]
    for name, (a, b) in zip(("h_n", "c_n"), states):
        diffs[name] = float(np.max(np.abs(a - b.numpy())))
    return diffs


def _label(cfg):
    return (f"{cfg['cell']:<5}{cfg['num_layers']:>3}  {'bi' if cfg['bidirectional'] else 'uni':<4}"
            f"{'N,L' if cfg['batch_first'] else 'L,N':<5}{cfg['proj_size']:>4}  "
            f"{'yes' if cfg['bias'] else 'no':<5}{'unbatched' if cfg['unbatched'] else 'batched':<10}"
            f"{'given' if cfg['with_state'] else 'zero':<6}{cfg['dtype']:<8}")


HEADER = (f"{'cell':<5}{'L#':>3}  {'dir':<4}{'in':<5}{'proj':>4}  {'bias':<5}{'input':<10}"
          f"{'h_0':<6}{'dtype':<8}")


def _load(args):
    if args.weights is None:
        return None
    from ..io import load_weights

    if not args.cell or len(args.cell) != 1:
        raise CLIError("--weights needs exactly one --cell (lstm, gru or rnn)")
    named = [f"--{k.replace('_', '-')}" for k in FROM_FILE if getattr(args, k) is not None]
    if named:
        raise CLIError(f"{', '.join(named)}: the layer options come from --weights "
                       f"{args.weights}; only --batch-first, --unbatched, --with-state "
                       "and --dtype vary")
    return load_weights(args.weights)


def run(args):
    for name in ("input_size", "hidden_size", "seq_len", "batch"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_layers is not None and args.num_layers < 1:
        raise CLIError(f"--num-layers must be >= 1, got {args.num_layers}")
    if args.proj_size is not None and not 0 <= args.proj_size < args.hidden_size:
        raise CLIError(f"--proj-size must be in [0, hidden size {args.hidden_size}), got "
                       f"{args.proj_size}")
    _torch()
    sd = _load(args)
    if sd is not None:  # the file fixes sizes and layer options
        import nplstm


        cls = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}[args.cell[0]]
        layer = cls.from_state_dict(sd, args.prefix)
        for key in FROM_FILE + ("input_size", "hidden_size"):
            setattr(args, key, getattr(layer, key))
    configs = grid(args)
    sizes = (args.input_size, args.hidden_size, args.seq_len, args.batch)
    rows, failures = [], 0
    for cfg in configs:
        diffs = compare(cfg, sizes, sd, args.prefix, args.seed)
        ok = max(diffs.values()) <= TOL[cfg["dtype"]]
        failures += not ok
        rows.append((cfg, diffs, ok))
    if args.verbose or len(rows) <= 16:
        print(f"{HEADER}{'output':>10}{'h_n':>10}{'c_n':>10}  result")
        for cfg, d, ok in rows:
            c_n = f"{d['c_n']:>10.2g}" if "c_n" in d else f"{'-':>10}"
            print(f"{_label(cfg)}{d['output']:>10.2g}{d['h_n']:>10.2g}{c_n}"
                  f"  {'ok' if ok else 'FAIL'}")
    else:
        _summary(rows)
    where = f" ({args.weights})" if args.weights else ""
    print(f"\n{len(rows) - failures} of {len(rows)} configurations match PyTorch{where} "
          f"(tolerance float64 {TOL['float64']:g}, float32 {TOL['float32']:g})")
    return 1 if failures else 0


def _summary(rows):
    """One line per cell and dtype: how many configurations, the largest differences."""
    print(f"{'cell':<6}{'dtype':<9}{'configs':>8}{'max output':>12}{'max h_n':>10}"
          f"{'max c_n':>10}{'tolerance':>11}  result")
    groups = {}
    for cfg, d, ok in rows:
        groups.setdefault((cfg["cell"], cfg["dtype"]), []).append((d, ok))
    for (cell, dtype), items in groups.items():
        worst = {k: max(d[k] for d, _ in items) for k in ("output", "h_n")}
        c_n = f"{max(d['c_n'] for d, _ in items):>10.2g}" if cell == "lstm" else f"{'-':>10}"
        fails = sum(not ok for _, ok in items)
        print(f"{cell:<6}{dtype:<9}{len(items):>8}{worst['output']:>12.2g}{worst['h_n']:>10.2g}"
              f"{c_n}{TOL[dtype]:>11g}  {'ok' if not fails else f'{fails} FAIL'}")
    print("(-v prints every configuration)")
