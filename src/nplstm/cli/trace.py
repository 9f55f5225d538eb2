"""``nplstm trace``: walk a sequence through a layer and print every gate, step by step.

Runs the demo model (an LSTM/GRU/RNN and a Linear head with seeded weights) or
your own weights, on the built-in series or your input, and prints for each
step each gate's shape and values, the new cell and hidden state and the
prediction, in tables; can also save the whole trace (.npz) and plot it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

import numpy as np

from .. import gates
from ..card import equation
from ..demo import LAYERS, build, series
from ..module import article
from ..style import ansi
from ..trace import projection_units, range_ends
from . import CLIError, check_output, fit_families, need_matplotlib, no_family, seed

EPILOG = """\
examples:
  nplstm trace                                  # demo LSTM: 1 input, 3 units, 5 steps
  nplstm trace --cell gru --hidden-size 4 --length 8 --steps 0:3
  nplstm trace --input x.npy --units 0:4        # your data (L, H_in) or (L, N, H_in)
  nplstm trace --weights model.pt --prefix lstm. --head fc. --input x.csv
  nplstm trace --weights gru.safetensors --layer 1 --direction 1   # cell read off the file
  nplstm trace --length 40 --steps 0 --save trace.npz --plot gates.png
  nplstm trace --cell rnn --nonlinearity relu --steps 0:2
  nplstm trace --proj-size 2 --hidden-size 5           # LSTM with a projection

The demo model is the one nplstm demo runs: for the same --cell, sizes and
--seed, the same weights (drawn by NumPy, with or without torch installed).

input files: .npy holds (L, H_in), (L, N, H_in) or (N, L, H_in) with
--batch-first; .csv/.txt has one row per time step, one column per feature
(a header row is skipped). The cell family and sizes of --weights are read off
the state_dict's shapes (rows of weight_ih: LSTM 4 x H, GRU 3 x H, RNN 1 x H);
--cell, if given, must agree. A state_dict does not record an RNN's
nonlinearity: tanh unless --nonlinearity relu.
"""

MAX_STEPS, MAX_UNITS = 20, 8  # printed by default; --steps/--units show more
# The demo model's options: name, default, metavar, help.
DEMO_OPTIONS = (("hidden_size", 3, "H", ""), ("output_size", 1, "OUT",
                                                "outputs of the linear head "),
                ("num_layers", 1, None, ""), ("proj_size", 0, "P", "LSTM only "),
                ("seed", 0, None, "seed of the weights "))


def register(sub):
    p = sub.add_parser("trace", help="print every gate of every step in tables; save or "
                       "plot the trace", description=__doc__.split("\n\n")[1],
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", choices=tuple(LAYERS),
                   help="cell family (default: lstm; with --weights, the file's)")
    m = p.add_argument_group("demo model (without --weights)")
    m.add_argument("--input-size", type=int, metavar="H_IN",
                   help="features per step (default: the width of --input, else 1)")
    for name, default, meta, help_ in DEMO_OPTIONS:
        m.add_argument(f"--{name.replace('_', '-')}", type=seed if name == "seed" else int,
                       metavar=meta, help=f"{help_}(default: {default})")
    m.add_argument("--nonlinearity", choices=("tanh", "relu"),
                   help="RNN only, demo model or --weights (default: tanh)")
    w = p.add_argument_group("your weights")
    w.add_argument("--weights", metavar="FILE", help=".pt/.pth/.safetensors/.npz state_dict")
    w.add_argument("--prefix", help="key prefix of the layer, e.g. 'lstm.' (default: none)")
    w.add_argument("--head", metavar="PREFIX",
                   help="prefix of a Linear head in the same file, e.g. 'fc.'")
    i = p.add_argument_group("input")
    i.add_argument("--input", metavar="FILE", help=".npy or .csv (default: built-in series)")
    i.add_argument("--length", type=int, metavar="L",
                   help="steps of the built-in series sin(0.5 t + k) (default: 5)")
    i.add_argument("--batch-first", action="store_true",
                   help="--input is a 3-D .npy of (N, L, H_in)")
    i.add_argument("--lengths", metavar="L0,L1,..",
                   help="valid length of each sequence of a padded batch (a 3-D --input)")
    i.add_argument("--float32", action="store_true", help="run in float32 (default float64)")
    s = p.add_argument_group("what to show")
    s.add_argument("--steps", metavar="SEL", help=f"an int or START:STOP, e.g. 3, 0:5, -1 "
                   f"(default: all, at most {MAX_STEPS})")
    s.add_argument("--units", metavar="SEL", help=f"an int or START:STOP, e.g. 2 (unit 2 "
                   f"alone) or 0:4, as nplstm card --units takes (default: at most "
                   f"{MAX_UNITS})")
    s.add_argument("--layer", type=int, default=0, help="(default: 0)")
    s.add_argument("--direction", type=int, default=0, help="0 forward, 1 reverse (default: 0)")
    s.add_argument("--batch", type=int, default=0, help="which sequence (default: 0)")
    s.add_argument("--precision", type=int, default=4, help="decimals (default: 4)")
    s.add_argument("--color", action=argparse.BooleanOptionalAction, default=None,
                   help="colour gate names (default: when stdout is a terminal)")
    o = p.add_argument_group("files")
    o.add_argument("--save", metavar="FILE.npz", help="write the whole trace (Trace.load)")
    o.add_argument("--plot", metavar="FILE", help="overview figure: .png, .svg or .pdf")
    p.set_defaults(func=run)


# ------------------------------------------------------------- arguments --


def parse_selection(spec, size, option):
    """``"3"``, ``"-1"``, ``"0:5"``, ``":"`` or ``"0:10:2"`` -> indices into ``range(size)``."""
    try:
        parts = [int(p) if p.strip() else None for p in spec.split(":")]
        if len(parts) > 3 or (len(parts) == 3 and parts[2] == 0):
            raise ValueError
    except ValueError:
        raise CLIError(f"bad {option} {spec!r}: expected an int or START:STOP, "
                       "e.g. 3 or 0:5") from None
    if len(parts) == 1:
        if not -size <= parts[0] < size:
            raise CLIError(f"{option} {spec}: out of range, there are {size} (0..{size - 1})")
        return np.array([parts[0] % size])
    idx = np.arange(size)[slice(*parts)]
    if idx.size == 0:
        raise CLIError(f"{option} {spec}: selects nothing of 0..{size - 1}")
    return idx


def _read_input(path, batch_first):
    """An input file as a float64 array: ``(L, H_in)`` or time-major ``(L, N, H_in)``,
    and the shape the file holds (``(N, L, H_in)`` with ``batch_first``)."""
    if batch_first and os.path.splitext(path)[1].lower() != ".npy":
        raise CLIError(f"--batch-first: --input {path} is a table of (L, H_in), one sequence; "
                       "--batch-first is for a 3-D .npy of (N, L, H_in)")
    if not os.path.isfile(path):
        raise CLIError(f"--input {path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            x = np.load(path, allow_pickle=False)
        elif ext in (".csv", ".txt"):
            x = _read_table(path)
        else:
            raise CLIError(f"--input {path}: expected a .npy or .csv file")
    except ValueError as exc:
        raise CLIError(f"--input {path}: cannot read numbers: {exc}") from None
    if x.dtype.kind not in "iuf":
        raise CLIError(f"--input {path}: expected numbers, got dtype {x.dtype}")
    x = x.reshape(-1, 1) if x.ndim == 1 else x
    if x.ndim not in (2, 3) or 0 in x.shape:
        raise CLIError(f"--input {path}: expected (L, H_in) or (L, N, H_in), got shape "
                       f"{x.shape}")
    if batch_first and x.ndim != 3:
        raise CLIError(f"--batch-first: --input {path} has shape {x.shape}, one sequence "
                       "(L, H_in); --batch-first is for a batch of (N, L, H_in)")
    shape = x.shape
    if batch_first:
        x = x.transpose(1, 0, 2)  # (N, L, H_in) -> (L, N, H_in)
    return x.astype(np.float64), shape


def _read_table(path):
    """A .csv/.txt table ``(L, H_in)``: one row per step, a header row skipped.

    Read row by row so an empty or ragged file gets an error in the CLI's words
    (NumPy's ``loadtxt`` warns on an empty file and advises ``usecols`` on a ragged one).
    """
    with open(path) as f:
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    if lines:
        try:
            [float(v) for v in lines[0][1].replace(",", " ").split()]
        except ValueError:
            lines = lines[1:]  # a header row
    if not lines:
        raise CLIError(f"--input {path}: no rows of numbers in the file")
    sep = "," if "," in lines[0][1] else None
    rows = [(n, line.split(sep), line.strip()) for n, line in lines]
    width = len(rows[0][1])
    for n, row, line in rows:
        if len(row) != width:
            raise CLIError(f"--input {path}: line {n} has {len(row)} value{'s' * (len(row) != 1)}, the first row "
                           f"{width}; every row (time step) needs the same features")
        try:
            row[:] = [float(v) for v in row]
        except ValueError:
            raise CLIError(f"--input {path}: line {n} is not all numbers: {line!r}") from None
    return np.array([row for _, row, _ in rows], dtype=np.float64)  # (L, H_in)


def _check_nonlinearity(args):
    if args.nonlinearity is not None and args.cell != "rnn":
        raise CLIError(f"--nonlinearity is an RNN option (--cell rnn), not one of "
                       f"--cell {args.cell}")


def _model(args, dtype, width):
    """``(layer, head or None, description)`` from --weights or the demo model."""
    if args.weights:
        return _weights_model(args, dtype)
    args.cell = args.cell or "lstm"
    _check_nonlinearity(args)
    for option in ("prefix", "head"):
        if getattr(args, option) is not None:
            raise CLIError(f"--{option} needs --weights: it picks keys of a weights file")
    for name, default, _, _ in DEMO_OPTIONS:
        if getattr(args, name) is None:
            setattr(args, name, default)
    for name in ("hidden_size", "output_size", "num_layers"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.proj_size and args.cell != "lstm":
        raise CLIError(f"--proj-size is an LSTM option, not one of --cell {args.cell}")
    if not 0 <= args.proj_size < args.hidden_size:
        raise CLIError(f"--proj-size must be between 0 and --hidden-size - 1 "
                       f"({args.hidden_size - 1}), got {args.proj_size}")
    size = args.input_size if args.input_size is not None else (width or 1)
    if size < 1:
        raise CLIError(f"--input-size must be >= 1, got {size}")
    model = build(args.cell, size, args.hidden_size, args.output_size, args.num_layers,
                  args.seed, dtype=dtype, use_torch=False,
                  nonlinearity=args.nonlinearity or "tanh", proj_size=args.proj_size)
    where = f"demo model, U(-1, 1) from numpy default_rng({args.seed})"
    if args.num_layers == 1 and not args.proj_size and args.nonlinearity != "relu":
        sizes = "".join(f" --{name.replace('_', '-')} {value}" for name, value, default in
                        (("input_size", size, 1), ("hidden_size", args.hidden_size, 3),
                         ("output_size", args.output_size, 1)) if value != default)
        where += f"\n  same as: nplstm demo --cell {args.cell}{sizes} --seed {args.seed}"
    return model.layer, model.head, where


def _weights_model(args, dtype):
    """The layer (and head) of a weights file, with the prefixes it has when one is wrong."""
    from .. import Linear, load_weights

    demo = [f"--{n.replace('_', '-')}" for n in ("input_size", *(o[0] for o in DEMO_OPTIONS))
            if getattr(args, n) is not None]
    if demo:
        raise CLIError(f"{', '.join(demo)} {'is an option' if len(demo) == 1 else 'are options'}"
                       " of the demo model; with --weights, sizes and weights come from the file")
    if not os.path.isfile(args.weights):
        raise CLIError(f"--weights {args.weights}: no such file")
    sd = load_weights(args.weights)
    prefix = args.prefix or ""
    _check_prefix(sd, args.weights, "--prefix", prefix, "weight_ih_l0", "layer")
    if args.head is not None:
        _check_prefix(sd, args.weights, "--head", args.head, "weight", "Linear head")
    args.cell = _family(sd, prefix, args)
    _check_nonlinearity(args)
    extra = {"nonlinearity": args.nonlinearity} if args.nonlinearity else {}
    layer = LAYERS[args.cell].from_state_dict(sd, prefix, dtype=dtype, **extra).eval()
    head = None if args.head is None else Linear.from_state_dict(sd, args.head, dtype=dtype)
    return layer, head, args.weights + (f", prefix {prefix!r}" if prefix else "")


def _family(sd, prefix, args):
    """The cell family of the layer at ``prefix``, read off its gate rows; --cell must agree."""
    fits, errors = fit_families(sd, prefix)
    fits = list(fits)
    if args.cell is None and len(fits) == 1:
        return fits[0]
    if args.cell is None:
        raise no_family(args.weights, errors)
    if args.cell not in fits and fits:
        found = " or ".join(f"{article(c.upper())}'s (--cell {c})" for c in fits)
        raise CLIError(f"--cell {args.cell}: the weights in {args.weights} are {found}, not "
                       f"{article(args.cell.upper())}'s ({errors[args.cell]}); pass "
                       f"--cell {fits[0]}, or leave --cell out")
    if args.cell not in fits:
        raise CLIError(f"--weights {args.weights}: {errors[args.cell]}")
    return args.cell


def _check_prefix(sd, path, option, prefix, key, what):
    """A CLIError naming the prefixes in the file that do hold ``key``, if ``prefix`` does not."""
    if prefix + key in sd:
        return
    found = sorted({k[:-len(key)] for k in sd if isinstance(k, str) and k.endswith(key)
                    and (key != "weight" or np.ndim(sd[k]) == 2)})
    keys = ", ".join(sorted(str(k) for k in sd)[:12]) + (" ..." if len(sd) > 12 else "")
    one = "one" if len(found) == 1 else f"{len(found)}"
    hint = (f"; it has {one} under {' or '.join(f'{option} {shlex.quote(p)}' for p in found)}"
            if found else f"; its keys: {keys}")
    raise CLIError(f"--weights {path}: no {what} at {option} {shlex.quote(prefix)} (no key "
                   f"{prefix + key!r}){hint}")


# ---------------------------------------------------------------- output --


class Table:
    """Aligned rows of a name, a function, a shape and numbers; names in colour."""

    def __init__(self, precision, color, mode):
        self.precision, self.color = precision, color
        self.width = precision + 4  # sign, digits, point
        funcs = gates.GATE_FUNCTIONS[mode].values()
        self.fw = max([10] + [len(f.__name__) + 2 for f in funcs])  # function column

    def num(self, v):
        return f"{v:>{self.width}.{self.precision}f}"

    def name(self, name, text, width):
        text = f"{text:<{width}}"
        return ansi(name, text) if self.color else text

    def row(self, name, func, shape, values):
        return (f"  {self.name(name, name, 7)}{self.name(name, func, self.fw)}{shape:<10}"
                + " ".join(self.num(v) for v in values))

    def header(self, units, label="u"):
        """Column titles: ``u0 u1 ..`` for hidden units, ``p0 p1 ..`` for a projection's."""
        return (f"  {'':<7}{'function':<{self.fw}}{'shape':<10}"
                + " ".join(f"{label + str(u):>{self.width}}" for u in units))


class Columns:
    """Which values each row shows, under which column titles.

    With ``proj_size`` the LSTM's ``h`` has P entries, not H: its columns are
    the projection's outputs ``p0 p1 ..`` (the selected units below P, else
    the first ones: :func:`nplstm.trace.projection_units`), not the hidden
    units ``u0 u1 ..`` of the gates, and get their own title line. So does the
    Linear head's output ``y0 y1 ..``.
    """

    def __init__(self, trace, units):
        self.units, self.P = units, trace.proj_size
        self.proj = None if not self.P else projection_units(units, self.P)
        self.label = None  # the title line printed last

    def of(self, name):
        """``(label, indices)`` for the row of gate or state ``name``."""
        return ("p", self.proj) if self.P and name[0] == "h" else ("u", self.units)

    def row(self, table, name, func, shape, vector):
        label, idx = self.of(name)
        if label != self.label:
            print(table.header(idx, label))
            self.label = label
        print(table.row(name[0], func, shape, vector[idx]))

    def head_row(self, table, shape, y):
        """The Linear head's output ``y`` under its own titles ``y0 y1 ..``."""
        y = y[:MAX_UNITS]
        print(table.header(range(y.size), "y"))
        self.label = "y"
        print(table.row("y", "Linear", shape, y))


def _print_legend(trace, args, head, table):
    funcs = gates.GATE_FUNCTIONS[trace.mode]
    P = trace.proj_size
    print(f"  {'':<7}{'function (nplstm.gates)':<26}equation (from its docstring)")
    for name in _order(trace):
        print(f"  {table.name(name, name, 7)}{table.name(name, funcs[name].__name__, 26)}"
              f"{equation(trace.mode, name, trace.nonlinearity, bool(P) and name == 'h')}")
    if P:
        print(f"  {'':<33}p0, p1, ..: the projection's outputs, P={P} (not the units u0, "
              "u1, .. of the gates)")
    if trace.options:
        given = ", ".join(f"{k}={v!r}" for k, v in trace.options.items())
        print(f"  {'':<7}options beyond PyTorch's: {given}; the equations above are "
              f"PyTorch's (see nplstm.gates.{trace.mode}_step)")
    if head is not None and args.layer == trace.num_layers - 1:
        h = "[h_forward, h_reverse]" if trace.num_directions == 2 else "h"
        print(f"  {table.name('y', 'y', 7)}{table.name('y', 'Linear', 26)}y = W {h} + b")
    elif head is not None:
        print(f"  (the Linear head reads the last layer's h: --layer {trace.num_layers - 1} "
              "shows its y)")
    print()


def _order(trace):
    return [n for n in trace.gates] + [n for n in ("c", "h") if n in trace and
                                       n not in trace.gates]


def _print_steps(trace, pred, args, steps, columns, table):
    funcs = gates.GATE_FUNCTIONS[trace.mode]
    layer, d, b = args.layer, args.direction, args.batch
    valid = trace.mask()[:, b]
    P = args.precision
    L = trace.steps
    order = steps[::-1] if d == 1 else steps  # the reverse direction runs backwards
    for t in order:
        step = trace.step(int(t), layer, d, b)
        x = " ".join(f"{v:.{P}f}" for v in step["x"][:MAX_UNITS])
        more = " ..." if step["x"].size > MAX_UNITS else ""
        print(f"step {t}   x_t = [{x}{more}]   shape {step['x'].shape}")
        if not valid[t]:
            print(f"  (past length {trace.lengths[b]} of sequence {b}: padding, not run; "
                  "recorded as zeros)\n")
            continue
        columns.label = None  # each step's table starts with its column titles
        if t == order[0]:  # where this printout starts: show the state it starts from
            start = (int(trace.lengths[b]) - 1 if trace.lengths is not None else L - 1) \
                if d else 0
            for name in ("h_prev", "c_prev"):
                if name in step:
                    label = f"{name[0]}_0" if t == start else f"{name[0]}_prev"
                    columns.row(table, name, f"({label})", "", step[name])
        shape = lambda a: str(a.shape[-1:] if trace.unbatched else a.shape)
        for name in _order(trace):
            a = trace[name][layer, d, t]  # (N, H)
            columns.row(table, name, funcs[name].__name__, shape(a), step[name])
        if pred is not None and layer == trace.num_layers - 1:  # the head reads it
            y = pred[t] if trace.unbatched else pred[t, b]  # (out,)
            columns.head_row(table, str(pred.shape[-1:] if trace.unbatched
                                        else pred.shape[1:]), y)
        print()


def _print_summary(trace, args, columns, table):
    j = args.layer * trace.num_directions + args.direction
    names = [n for n in ("h_n", "c_n") if getattr(trace, n) is not None]
    print(f"final {' and '.join(f'{n}[{j}]' for n in names)} (layer {args.layer}, "
          f"{('forward', 'reverse')[args.direction]}"
          + ("" if trace.unbatched else f", sequence {args.batch}") + "):")
    columns.label = None
    for name in names:
        final = getattr(trace, name)
        v = final[j] if trace.unbatched else final[j, args.batch]  # (H,) or (P,)
        columns.row(table, name, f"{name}[{j}]", str(v.shape), v)
    print("saturation: share of valid steps x units x sequences within 5% of an end of "
          "each gate's range")
    for name, (lo, hi) in trace.saturation(args.layer, args.direction).items():
        ends = range_ends(*trace.gate_range(name, args.direction))
        if np.isnan(lo):
            print(f"  {table.name(name, name, 7)}unbounded both ways: no saturation")
            continue
        print(f"  {table.name(name, name, 7)}{lo:>5.0%} near {ends[0]:<4}"
              + ("" if np.isnan(hi) else f"{hi:>7.0%} near {ends[1]}"))


def run(args):
    if not 0 <= args.precision <= 16:
        raise CLIError(f"--precision must be between 0 and 16, got {args.precision}")
    dtype = np.float32 if args.float32 else np.float64
    if args.input and args.length is not None:
        raise CLIError(f"--length {args.length} is the length of the built-in series; with "
                       f"--input {args.input} the file decides it")
    if args.batch_first and not args.input:
        raise CLIError("--batch-first needs --input: it says a 3-D .npy is (N, L, H_in); "
                       "the built-in series is one sequence (L, H_in)")
    length = 5 if args.length is None else args.length
    if length < 1:
        raise CLIError(f"--length must be >= 1, got {length}")
    if args.save:  # outputs are checked before any work or printing
        check_output("--save", args.save, (".npz",))
    if args.plot:
        check_output("--plot", args.plot, (".png", ".svg", ".pdf"))
        need_matplotlib("--plot")
    x, file_shape = _read_input(args.input, args.batch_first) if args.input else (None, None)
    layer, head, where = _model(args, dtype, None if x is None else x.shape[-1])
    if x is None:
        x = series(length, layer.input_size, dtype)  # (L, H_in)
        what = f"built-in series sin(0.5 t + k), shape {x.shape}"
    else:
        what = f"{args.input}, shape {file_shape}" + (
            f" (N, L, H_in), run time-major as {x.shape}" if args.batch_first else "")
    if x.shape[-1] != layer.input_size:
        raise CLIError(f"--input {args.input}: each step has {x.shape[-1]} features, but the "
                       f"model's input_size is {layer.input_size}")
    lengths = None
    if args.lengths:
        try:
            lengths = np.array([int(v) for v in args.lengths.split(",")])
        except ValueError:
            raise CLIError(f"bad --lengths {args.lengths!r}: expected ints like 5,3") from None
        if x.ndim != 3:
            raise CLIError(f"--lengths {args.lengths}: needs a batched --input (L, N, H_in) "
                           "(or (N, L, H_in) with --batch-first); "
                           + (f"--input {args.input} is" if args.input else
                              "the built-in series is") + f" one sequence, shape {x.shape}")
    trace = layer.trace(x, lengths=lengths)
    for name, value, limit in (("layer", args.layer, trace.num_layers),
                               ("direction", args.direction, trace.num_directions),
                               ("batch", args.batch, trace.batch_size)):
        if not 0 <= value < limit:
            raise CLIError(f"--{name} {value}: this trace has {limit} (0..{limit - 1})")
    L, H = trace.steps, trace.hidden_size
    steps = (parse_selection(args.steps, L, "--steps") if args.steps
             else np.arange(min(L, MAX_STEPS)))
    units = (parse_selection(args.units, H, "--units") if args.units
             else np.arange(min(H, MAX_UNITS)))
    pred = head(trace.output) if head is not None else None  # (L, N, out) or (L, out)
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ \
        if args.color is None else args.color
    table = Table(args.precision, color, trace.mode)

    arrow = f" -> {head!r}" if head is not None else ""
    print(f"nplstm trace: {layer!r}{arrow}")
    print(f"  weights: {where}")
    print(f"  input:   {what}")
    shown = (f"step{'s' if len(steps) > 1 else ''} {_span(steps)} of {L}"
             + ("" if args.steps or L <= MAX_STEPS else " (--steps for more)"))
    print(f"  showing: layer {args.layer}, {('forward', 'reverse')[args.direction]}"
          + ("" if trace.unbatched else f", sequence {args.batch}")
          + f"; {shown}; units {_span(units)} of {H}"
          + ("" if args.units or H <= MAX_UNITS else " (--units for more)") + "\n")
    columns = Columns(trace, units)
    _print_legend(trace, args, head, table)
    _print_steps(trace, pred, args, steps, columns, table)
    _print_summary(trace, args, columns, table)
    if args.save:
        trace.save(args.save)
        print(f"saved the trace to {args.save} (nplstm.Trace.load)")
    if args.plot:
        _plot(trace, args, units)
    return 0


def _span(idx):
    if len(idx) > 1 and np.all(np.diff(idx) == 1):
        return f"{idx[0]}..{idx[-1]}"
    return ",".join(str(i) for i in idx)


def _plot(trace, args, units):
    try:
        from .. import plot
        fig = plot.overview(trace, args.layer, args.direction, args.batch,
                            units=units if args.units else None)
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    fig.savefig(args.plot, dpi=110)
    print(f"wrote {args.plot}")
