"""``nplstm demo``: the seed post's walkthrough, for any sizes.

Build an LSTM (or GRU/RNN) + Linear with seeded random weights, copy the
weights into PyTorch, push a short time series through both and print, step by
step and layer by layer, what nplstm.gates computes (each gate's function, or
an RNN's one block) beside PyTorch's states.
"""

from __future__ import annotations

import argparse

import numpy as np

from .. import gates
from ..demo import build, series
from . import CLIError, seed

EPILOG = """\
examples:
  nplstm demo                              # LSTM, 1 input, 3 hidden units, 5 steps
  nplstm demo --cell gru --hidden-size 4   # the same walk through a GRU
  nplstm demo --input-size 2 --steps 8 --float32
  nplstm demo --no-torch                   # NumPy side only, nplstm's own weights
  nplstm demo --cell rnn --nonlinearity relu --num-layers 2

Values of at most 4 units are printed per column (the first ones), so the
NumPy and PyTorch columns fit side by side; the verdict compares all of them.
"""

MAX_UNITS = 4  # printed per column; the comparison covers every unit

TOL = {np.float64: 1e-12, np.float32: 1e-5}


def register(sub):
    p = sub.add_parser("demo", help="walk a time series through a layer step by step, "
                       "NumPy beside PyTorch", description=__doc__.split("\n\n")[1],
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm",
                   help="which recurrent cell (default: lstm)")
    p.add_argument("--input-size", type=int, default=1, metavar="H_IN",
                   help="features per time step (default: 1)")
    p.add_argument("--hidden-size", type=int, default=3, metavar="H",
                   help="hidden units (default: 3)")
    p.add_argument("--output-size", type=int, default=1, metavar="OUT",
                   help="outputs of the linear layer (default: 1)")
    p.add_argument("--num-layers", type=int, default=1, help="stacked layers (default: 1)")
    p.add_argument("--nonlinearity", choices=("tanh", "relu"),
                   help="RNN only (default: tanh)")
    p.add_argument("--steps", type=int, default=5, help="time steps (default: 5)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the weights (default: 0)")
    p.add_argument("--float32", action="store_true",
                   help="run in float32 (default float64; tolerance 1e-5 instead of 1e-12)")
    p.add_argument("--no-torch", action="store_true",
                   help="skip PyTorch even if installed: NumPy side only")
    p.add_argument("--precision", type=int, default=4, help="decimals printed (default: 4)")
    p.set_defaults(func=run)


def _fmt(a, precision):
    """At most MAX_UNITS values, then `` ...``."""
    a = np.asarray(a)
    more = " ..." if a.size > MAX_UNITS else ""
    return np.array2string(a[:MAX_UNITS], precision=precision, floatmode="fixed",
                           suppress_small=False, separator=" ", max_line_width=10**6)[:-1] \
        + more + "]"


def _plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def _trace_command(args):
    """The ``nplstm trace`` command line that runs this very model on this input."""
    sizes = [f"--{name.replace('_', '-')} {getattr(args, name)}"
             for name, default in (("input_size", 1), ("hidden_size", 3), ("output_size", 1),
                                   ("num_layers", 1))
             if getattr(args, name) != default]
    if args.nonlinearity == "relu":
        sizes.append("--nonlinearity relu")
    more = ([f"--length {args.steps}"] if args.steps != 5 else []) + (
        ["--float32"] if args.float32 else [])
    return " ".join(["nplstm trace --cell", args.cell, *sizes, "--seed", str(args.seed),
                     *more])


def _check(args):
    for name in ("input_size", "hidden_size", "output_size", "steps", "num_layers"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.nonlinearity is not None and args.cell != "rnn":
        raise CLIError(f"--nonlinearity is an RNN option (--cell rnn), not one of "
                       f"--cell {args.cell}")
    if not 0 <= args.precision <= 16:
        raise CLIError(f"--precision must be between 0 and 16, got {args.precision}")


def _per_gate_step(cell, layer, k, x, state):
    """One step of layer k through nplstm.gates, the seed's one-function-per-gate path."""
    w = tuple(getattr(layer, f"{name}_l{k}") for name in
              ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    if cell == "lstm":
        h, c, g = gates.lstm_step(x, state[0], state[1], *w)
        return (h, c), dict(g, c=c, h=h)
    if cell == "gru":
        h, g = gates.gru_step(x, state[0], *w)
        return (h,), dict(g, h=h)
    h = gates.rnn_step(x, state[0], *w, nonlinearity=layer.nonlinearity)
    return (h,), {"h": h}


def _torch_steps(model, x):
    """PyTorch's h (and c) after each step, running its layer one step at a time."""
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x))
    out, states, hx = [], [], None
    with torch.no_grad():
        for t in range(len(x)):
            y, hx = model.torch_layer(xt[t:t + 1], hx)  # unbatched: (1, H_in)
            parts = hx if isinstance(hx, tuple) else (hx,)
            states.append([{k: p[j].numpy() for k, p in zip("hc", parts)}
                           for j in range(len(parts[0]))])  # per layer
            out.append(model.torch_head(y[0]).numpy())
    return out, states


def run(args):
    _check(args)
    dtype = np.float32 if args.float32 else np.float64
    model = build(args.cell, args.input_size, args.hidden_size, args.output_size,
                  args.num_layers, seed=args.seed, dtype=dtype, use_torch=not args.no_torch,
                  nonlinearity=args.nonlinearity or "tanh")
    has_torch = model.torch_layer is not None
    x = series(args.steps, args.input_size, dtype)  # (L, H_in)
    P, K = args.precision, args.num_layers
    source = ", copied into PyTorch" if has_torch else ""
    print(f"nplstm demo: {model.layer!r} -> {model.head!r}")
    print(f"  weights: U(-1, 1) from numpy default_rng({args.seed}){source}; dtype "
          f"{np.dtype(dtype).name}")
    print(f"  the same model: {_trace_command(args)}")
    print(f"  input: {_plural(args.steps, 'step')} of sin(0.5 t + k), shape {x.shape}")
    shape = model.layer.weight_ih_l0.shape
    if args.cell == "rnn":  # one block, no gates
        print(f"  one block in weight_ih_l0 {shape}, rows: h (an RNN has no gates)")
    else:
        print(f"  gates stacked in weight_ih_l0 {shape}, rows: "
              + " | ".join(gates.GATE_ORDER[args.cell]))
    if args.hidden_size > MAX_UNITS:
        print(f"  values of units 0..{MAX_UNITS - 1} of {args.hidden_size} printed; all "
              "are compared")
    print()

    t_out, t_states = _torch_steps(model, x) if has_torch else (None, None)
    funcs = gates.GATE_FUNCTIONS[args.cell]
    states = [tuple(np.zeros(args.hidden_size, dtype) for _ in model.layer.family.states)
              for _ in range(K)]
    width = max(len(f.__name__) for f in funcs.values()) + 2
    worst = 0.0
    for t in range(args.steps):
        print(f"step {t}   x = {_fmt(x[t], P)}   shape {x[t].shape}")
        inp = x[t]
        for k in range(K):
            if K > 1:
                print(f"  layer {k}")
            states[k], values = _per_gate_step(args.cell, model.layer, k, inp, states[k])
            inp = values["h"]  # the next layer's input
            for name, value in values.items():
                line = f"  {funcs[name].__name__:<{width}}{gates.equation(funcs[name]):<52}" \
                       f"{value.shape!s:<6} {_fmt(value, P)}"
                if has_torch and name in t_states[t][k]:
                    line += f"   torch {_fmt(t_states[t][k][name], P)}"
                    worst = max(worst, float(np.max(np.abs(value - t_states[t][k][name]))))
                print(line)
        y = model.head(inp)
        line = f"  {'Linear':<{width}}{'y = W h + b':<52}{y.shape!s:<6} {_fmt(y, P)}"
        if has_torch:
            line += f"   torch {_fmt(t_out[t], P)}"
            worst = max(worst, float(np.max(np.abs(y - t_out[t]))))
        print(line + "\n")

    # The fused fast path over the whole sequence must agree too.
    _pred, _output, fast_state = model(x)
    fast = fast_state if isinstance(fast_state, tuple) else (fast_state,)
    for k in range(K):
        for name, stepped, fused in zip("hc", states[k], fast):
            print(f"final {name}{f' of layer {k}' if K > 1 else ''}: nplstm.gates "
                  f"{_fmt(stepped, P)}   nplstm.{type(model.layer).__name__} "
                  f"{_fmt(fused[k], P)}" + (f"   torch {_fmt(t_states[-1][k][name], P)}"
                                            if has_torch else ""))
            worst = max(worst, float(np.max(np.abs(stepped - fused[k]))))
            if has_torch:
                worst = max(worst, float(np.max(np.abs(fused[k] - t_states[-1][k][name]))))
    tol = TOL[dtype]
    if not has_torch:
        print(f"\nlargest difference, nplstm.gates vs the fused layer: {worst:.3g}")
        print("--no-torch: only the NumPy side ran." if args.no_torch else
              "PyTorch is not installed: only the NumPy side ran. Add the comparison "
              "with: pip install 'nplstm[torch]'")
        return 0 if worst <= tol else 1
    verdict = "MATCH" if worst <= tol else "MISMATCH"
    final = "final h and c" if args.cell == "lstm" else "final h"
    what = "every gate, state" if args.cell != "rnn" else "every state"
    print(f"\nlargest difference between NumPy and PyTorch ({what}, output, "
          f"{final}): {worst:.3g}")
    print(f"{verdict}: {'within' if worst <= tol else 'beyond'} the {np.dtype(dtype).name} "
          f"tolerance {tol:g}")
    return 0 if worst <= tol else 1
