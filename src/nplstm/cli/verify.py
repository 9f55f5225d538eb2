"""``nplstm verify``: nplstm against PyTorch over a grid of configurations.

Runs nplstm and PyTorch on the same random non-zero weights and inputs over every
combination of layers, directions, batch_first, proj_size (LSTM), bias,
nonlinearity (RNN), batched or unbatched input and zero or given initial state,
in float64 and float32 (or over the configurations you pin, or on your own
weights); prints the largest differences of the output and final states and
exits 1 if any exceeds the tolerance (float64 1e-12, float32 1e-5).
"""

from __future__ import annotations

import argparse
import itertools
import os
import warnings

import numpy as np

from ..demo import LAYERS
from . import CLIError, fit_families, no_family, seed

EPILOG = """\
examples:
  nplstm verify                          # the whole grid: LSTM, GRU, RNN (tanh and relu)
  nplstm verify --cell gru -v            # one row per GRU configuration
  nplstm verify --cell lstm --num-layers 2 --bidirectional --proj-size 2 --dtype float32
  nplstm verify --cell rnn --nonlinearity relu --num-layers 1 --no-bidirectional \\
      --no-batch-first --bias --batched --with-state --dtype float64   # one configuration
  nplstm verify --weights model.pt --prefix lstm.                     # your own state_dict

Each configuration option pins one axis of the grid; an axis left out runs every
value in [brackets]. With --weights, the file decides the cell family (by the
rows of weight_ih_l0: LSTM 4 x H, GRU 3 x H, RNN 1 x H), the sizes, layers,
directions, proj_size and bias. A state_dict does not record an RNN's
nonlinearity: tanh is assumed unless --nonlinearity says relu.

Unbatched input with batch_first=True is in the grid on purpose: PyTorch ignores
batch_first for unbatched (L, H_in) input, and so must nplstm. Weights are drawn
from U(-1, 1); a ReLU RNN's from U(-1/sqrt(H), 1/sqrt(H)), as its outputs grow
without bound with larger ones and float32's relative precision would then exceed
the absolute tolerance.
"""

TOL = {"float64": 1e-12, "float32": 1e-5}
AXES = {"num_layers": (1, 2), "bidirectional": (False, True), "batch_first": (False, True),
        "proj_size": (0, 2), "bias": (True, False), "nonlinearity": ("tanh", "relu"),
        "unbatched": (False, True), "with_state": (False, True), "dtype": ("float64", "float32")}
SIZES = {"input_size": 3, "hidden_size": 5}  # without --weights
FROM_FILE = ("input_size", "hidden_size", "num_layers", "bidirectional", "proj_size", "bias")
NOUN = {"lstm": "an LSTM", "gru": "a GRU", "rnn": "an RNN"}


class Either(argparse.Action):
    """``--on | --off`` (e.g. ``--unbatched | --batched``): True for the first, False for the
    second, None (the whole grid) when neither is given."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, option_string == self.option_strings[0])

    def format_usage(self):
        return " | ".join(self.option_strings)


def register(sub):
    p = sub.add_parser("verify", help="compare nplstm with PyTorch over a grid of "
                       "configurations; exit 1 on any mismatch",
                       description=__doc__.split("\n\n")[1], epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", choices=tuple(LAYERS), action="append",
                   help="cell family, repeatable (default: all three; with --weights, the "
                   "file's)")
    c = p.add_argument_group("configuration", "each option pins one axis of the grid; an axis "
                             "left out runs every value in\n[brackets]. With --weights the file "
                             "fixes layers, directions, proj_size and\nbias.")
    yes_no = argparse.BooleanOptionalAction
    c.add_argument("--num-layers", type=int, help="stacked layers [1, 2]")
    c.add_argument("--bidirectional", action=yes_no, help="two directions, or one [both]")
    c.add_argument("--batch-first", action=yes_no,
                   help="input (N, L, H_in), or (L, N, H_in) [both]")
    c.add_argument("--proj-size", type=int,
                   help="LSTM only: projection size, 0 for none [0, 2 if --hidden-size > 2]")
    c.add_argument("--bias", action=yes_no, help="with bias vectors, or without [both]")
    c.add_argument("--nonlinearity", choices=("tanh", "relu"),
                   help="RNN only [tanh, relu; with --weights: tanh]")
    c.add_argument("--unbatched", "--batched", action=Either,
                   help="input (L, H_in) without a batch dimension, or with one [both]")
    c.add_argument("--with-state", "--zero-state", action=Either,
                   help="random initial states h_0 (and c_0), or none: zeros [both]")
    c.add_argument("--dtype", choices=("float32", "float64"),
                   help="[both; tolerance float64 1e-12, float32 1e-5]")
    w = p.add_argument_group("your weights")
    w.add_argument("--weights", metavar="FILE", help="a saved state_dict (.pt/.pth/.safetensors"
                   "/.npz) to verify instead of random weights")
    w.add_argument("--prefix", help="key prefix of the layer in FILE, e.g. 'lstm.' "
                   "(default: none)")
    s = p.add_argument_group("sizes and inputs")
    s.add_argument("--input-size", type=int, metavar="H_IN", help="features per step "
                   f"(default: {SIZES['input_size']}; with --weights, read from the file)")
    s.add_argument("--hidden-size", type=int, metavar="H", help="hidden units "
                   f"(default: {SIZES['hidden_size']}; with --weights, read from the file)")
    s.add_argument("--seq-len", type=int, default=7, metavar="L", help="time steps (default: 7)")
    s.add_argument("--batch", type=int, default=2, metavar="N",
                   help="sequences in a batched input (default: 2)")
    s.add_argument("--seed", type=seed, default=0,
                   help="seed of the random weights, inputs and initial states (default: 0)")
    p.add_argument("-v", "--verbose", action="store_true", help="one row per configuration "
                   "(the default for up to 16); else one row per cell and dtype")
    p.set_defaults(func=run)


def _flag(name):
    return "--" + name.replace("_", "-")


def _torch():
    try:
        import torch
    except ImportError:
        raise CLIError("verify compares with PyTorch, which is not installed: "
                       "pip install 'nplstm[torch]'") from None
    return torch


def grid(args, cells):
    """Every configuration to run, as dicts: the pinned axes fixed, the others in full."""
    out = []
    for cell in cells:
        axes = {k: v if getattr(args, k) is None else (getattr(args, k),) for k, v in AXES.items()}
        if cell != "lstm":
            axes["proj_size"] = (0,)
        if cell != "rnn":
            axes["nonlinearity"] = ("tanh",)
        for values in itertools.product(*axes.values()):
            cfg = dict(zip(axes, values), cell=cell)
            if cfg["proj_size"] < args.hidden_size:  # the grid's proj 2 needs hidden >= 3
                out.append(cfg)
    return out


def _options(cfg):
    """The layer's constructor options: proj_size for an LSTM, nonlinearity for an RNN."""
    opts = {k: cfg[k] for k in ("num_layers", "bidirectional", "batch_first", "bias")}
    if cfg["cell"] == "lstm":
        opts["proj_size"] = cfg["proj_size"]
    if cfg["cell"] == "rnn":
        opts["nonlinearity"] = cfg["nonlinearity"]
    return opts


def _weight_scale(cfg, hidden):
    """Half-width of the random weights: 1, or 1/sqrt(H) for a ReLU RNN.

    A ReLU RNN with U(-1, 1) weights grows its outputs without bound (to hundreds
    within a few steps), and float32's relative precision then exceeds the absolute
    tolerance; PyTorch's own initialisation, U(-1/sqrt(H), 1/sqrt(H)), keeps them
    of order one, so the comparison measures the arithmetic, not the growth.
    """
    return 1 / np.sqrt(hidden) if cfg["cell"] == "rnn" and cfg["nonlinearity"] == "relu" else 1.0


def compare(cfg, sizes, state_dict=None, prefix="", seed=0):
    """Max |diff| of output and each state between nplstm and PyTorch for one config."""
    torch = _torch()
    h_in, hidden, L, N = sizes
    dtype = np.dtype(cfg["dtype"])
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    opts = _options(cfg)
    t_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg["cell"]]
    theirs = t_cls(h_in, hidden, **opts).to(tdtype).eval()  # both in eval: inference
    if state_dict is None:
        g = torch.Generator().manual_seed(seed)
        k = _weight_scale(cfg, hidden)
        with torch.no_grad():
            for p in theirs.parameters():  # U(-k, k): no zero bias hides a bug
                p.copy_((torch.rand(p.shape, generator=g, dtype=tdtype) * 2 - 1) * k)
        ours = LAYERS[cfg["cell"]](h_in, hidden, **opts, dtype=dtype).eval()
        ours.load_state_dict(theirs.state_dict())
    else:
        ours = LAYERS[cfg["cell"]].from_state_dict(state_dict, prefix, dtype=dtype,
                                                   **opts).eval()
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


def _name(cfg):
    return f"rnn {cfg['nonlinearity']}" if cfg["cell"] == "rnn" else cfg["cell"]


def _label(cfg):
    return (f"{_name(cfg):<9}{cfg['num_layers']:>3}  {'bi' if cfg['bidirectional'] else 'uni':<4}"
            f"{'N,L' if cfg['batch_first'] else 'L,N':<5}{cfg['proj_size']:>4}  "
            f"{'yes' if cfg['bias'] else 'no':<5}{'unbatched' if cfg['unbatched'] else 'batched':<10}"
            f"{'given' if cfg['with_state'] else 'zero':<6}{cfg['dtype']:<8}")


HEADER = (f"{'cell':<9}{'L#':>3}  {'dir':<4}{'in':<5}{'proj':>4}  {'bias':<5}{'input':<10}"
          f"{'h_0':<6}{'dtype':<8}")


def _load(args):
    """The --weights state_dict and a line about it; sets args' cell, sizes and options."""
    from ..io import load_weights

    named = [_flag(k) for k in FROM_FILE if getattr(args, k) is not None]
    if named:
        raise CLIError(f"{', '.join(named)}: with --weights the sizes and layer options come "
                       f"from {args.weights}; only --batch-first, --unbatched/--batched, "
                       "--with-state/--zero-state, --dtype and --nonlinearity (RNN) vary")
    if not os.path.isfile(args.weights):
        raise CLIError(f"--weights {args.weights}: no such file")
    sd = load_weights(args.weights)
    prefix, key = args.prefix or "", "weight_ih_l0"
    if prefix + key not in sd:
        found = sorted(repr(k[:-len(key)]) for k in sd if isinstance(k, str) and k.endswith(key))
        raise CLIError(f"--prefix {prefix!r}: {args.weights} has no {prefix + key}; "
                       + (f"its layers have prefix {', '.join(found)}" if found
                          else "it holds no LSTM, GRU or RNN layer"))
    fits, errors = fit_families(sd, prefix)
    if not fits:
        raise no_family(args.weights, errors)
    [(cell, layer)] = fits.items()
    if args.cell and set(args.cell) != {cell}:
        raise CLIError(f"--cell {', '.join(args.cell)}: the weights in {args.weights} are "
                       f"{NOUN[cell]}'s ({prefix + key} has {layer.family.num_gates} x "
                       f"{layer.hidden_size} rows; LSTM 4 x H, GRU 3 x H, RNN 1 x H)")
    args.cell = [cell]
    for name in FROM_FILE:
        setattr(args, name, getattr(layer, name))
    n = layer.num_layers
    about = (f"{args.weights}{f', prefix {prefix!r}' if prefix else ''}: {NOUN[cell]}, "
             f"{n} layer{'s' * (n != 1)}, {'bi' if layer.bidirectional else 'uni'}directional"
             f"{f', proj_size {layer.proj_size}' if layer.proj_size else ''}, "
             f"{'with' if layer.bias else 'no'} bias; inputs from seed {args.seed}")
    if cell == "rnn":
        about += (f"\nnonlinearity {args.nonlinearity} (--nonlinearity)" if args.nonlinearity
                  else "\nnonlinearity tanh assumed: a state_dict does not record it "
                  "(--nonlinearity relu checks relu)")
        args.nonlinearity = args.nonlinearity or "tanh"
    return sd, about


def run(args):
    for name in ("input_size", "hidden_size", "seq_len", "batch", "num_layers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise CLIError(f"{_flag(name)} must be >= 1, got {getattr(args, name)}")
    torch = _torch()
    if args.weights is not None:
        sd, about = _load(args)
    elif args.prefix is not None:
        raise CLIError(f"--prefix {args.prefix!r} needs --weights: it picks the layer's keys "
                       "in a weights file")
    else:
        sd, about = None, (f"random weights U(-1, 1) from seed {args.seed}"
                     + ("; ReLU RNN U(-1/sqrt(H), 1/sqrt(H)), as ReLU grows unbounded"
                        if "rnn" in (args.cell or LAYERS) and args.nonlinearity != "tanh"
                        else ""))
        for name, default in SIZES.items():
            if getattr(args, name) is None:
                setattr(args, name, default)
    cells = list(dict.fromkeys(args.cell or LAYERS))
    source = f"the weights in {args.weights}" if args.weights else "--cell"
    for option, family in (("proj_size", "lstm"), ("nonlinearity", "rnn")):
        if getattr(args, option) and family not in cells:
            raise CLIError(f"{_flag(option)} {getattr(args, option)} is {NOUN[family]} option; "
                           f"the cells verified are {', '.join(cells)} (from {source})")
    if args.proj_size is not None and not 0 <= args.proj_size < args.hidden_size:
        raise CLIError(f"--proj-size must be in [0, hidden size {args.hidden_size}), got "
                       f"{args.proj_size}")
    configs = grid(args, cells)
    counts = ", ".join(f"{c} {sum(cfg['cell'] == c for cfg in configs)}" for c in cells)
    print(f"nplstm vs PyTorch {torch.__version__}: {len(configs)} configuration"
          f"{'s' * (len(configs) != 1)} ({counts}); H_in {args.input_size}, H "
          f"{args.hidden_size}, L {args.seq_len}, N {args.batch}\n{about}\n")
    sizes = (args.input_size, args.hidden_size, args.seq_len, args.batch)
    rows, failures = [], 0
    for cfg in configs:
        diffs = compare(cfg, sizes, sd, args.prefix or "", args.seed)
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
    n = len(rows)
    print(f"\n{n - failures} of {n} configuration{'s match' if n != 1 else ' matches'} PyTorch "
          f"(tolerance float64 {TOL['float64']:g}, float32 {TOL['float32']:g})")
    return 1 if failures else 0


def _summary(rows):
    """One line per cell and dtype: how many configurations, the largest differences."""
    print(f"{'cell':<10}{'dtype':<9}{'configs':>8}{'max output':>12}{'max h_n':>10}"
          f"{'max c_n':>10}{'tolerance':>11}  result")
    groups = {}
    for cfg, d, ok in rows:
        groups.setdefault((_name(cfg), cfg["dtype"]), []).append((d, ok))
    for (cell, dtype), items in groups.items():
        worst = {k: max(d[k] for d, _ in items) for k in ("output", "h_n")}
        c_n = f"{max(d['c_n'] for d, _ in items):>10.2g}" if cell == "lstm" else f"{'-':>10}"
        fails = sum(not ok for _, ok in items)
        print(f"{cell:<10}{dtype:<9}{len(items):>8}{worst['output']:>12.2g}{worst['h_n']:>10.2g}"
              f"{c_n}{TOL[dtype]:>11g}  {'ok' if not fails else f'{fails} FAIL'}")
    print("(-v prints every configuration)")
