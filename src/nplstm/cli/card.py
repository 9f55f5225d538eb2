"""``nplstm card``: draw the one-page reference card of a cell, from the code.

Every label, equation and weight row is read from nplstm.gates. With a trace
saved by ``nplstm trace --save`` (or ``Trace.save``), the card shows the
values of one step.
"""

from __future__ import annotations

import argparse
import os

from ..module import article
from . import CLIError, check_output, need_matplotlib

EPILOG = """\
examples:
  nplstm card -o card.pdf                        # printable LSTM card, A4 landscape
  nplstm card --cell gru -o gru.svg
  nplstm card --cell rnn --nonlinearity relu -o relu.pdf
  nplstm trace --save trace.npz && nplstm card --trace trace.npz --step 3 -o card.png
  nplstm card --trace trace.npz --step 0 --batch 1 --layer 1 --direction 1 -o card.png
  nplstm card --trace trace.npz --units 4:7 -o card.png   # units 4, 5, 6

--units means what it means in nplstm trace: an integer K is unit K alone
(-1 the last), START:STOP (or START:STOP:STEP) a range; the first N units
are :N. A gate's box has room for 3 values at
--precision 2 (6 at --precision 0, 2 at --precision 3), fewer when the
values are wide (|v| >= 10); values too long to print in decimals are shown
in e-notation. A projected LSTM's h (P entries) shows the units of --units
below P, else its first ones (the heading says which).
"""

FORMATS = (".png", ".svg", ".pdf")


def register(sub):
    p = sub.add_parser("card", help="draw the reference card of a cell (png, svg, pdf)",
                       description=__doc__.split("\n\n")[1], epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"),
                   help="cell family (default: lstm, or the trace's)")
    p.add_argument("--nonlinearity", choices=("tanh", "relu"),
                   help="RNN only: the equation drawn (default: tanh, or the trace's)")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="where to write: .png, .svg or .pdf")
    p.add_argument("--trace", metavar="FILE.npz", help="show the values of a saved trace")
    t = p.add_argument_group("with --trace")
    t.add_argument("--step", type=int, help="time step of the trace to show (default: 0)")
    t.add_argument("--batch", type=int, help="sequence of the batch (default: 0)")
    t.add_argument("--layer", type=int, help="(default: 0)")
    t.add_argument("--direction", type=int, help="0 forward, 1 reverse (default: 0)")
    t.add_argument("--units", metavar="SEL", help="which units' values to show, as in "
                   "nplstm trace: K (unit K alone) or START:STOP, e.g. 4:7; :N for the first "
                   "N (default: as many as fit, 3 at --precision 2)")
    t.add_argument("--precision", type=int, help="decimals shown (default: 2)")
    p.add_argument("--dpi", type=int, default=150, help="resolution of a .png (default: 150)")
    p.set_defaults(func=run)


TRACE_OPTIONS = ("step", "batch", "layer", "direction", "units", "precision")


def _units(spec, trace, precision, values):
    """``--units`` as unit indices, a selection as in trace (K is unit K); their
    ``values`` (the step shown) must fit in a gate's box."""
    from .. import card
    from .trace import parse_selection

    idx = parse_selection(spec, trace.hidden_size, "--units")
    room = card.max_units(precision)
    if idx.size > room:
        raise CLIError(f"--units {spec}: selects {idx.size} units, but a gate's box has "
                       f"room for {room} at --precision {precision}")
    room, widest = card.room(values, idx, precision, trace.proj_size)
    if idx.size > room:
        raise CLIError(f"--units {spec}: selects {idx.size} units, but a gate's box has "
                       f"room for {room} values as wide as {widest} (at --precision "
                       f"{precision})")
    return idx


def run(args):
    check_output("-o", args.output, FORMATS)  # before any work
    need_matplotlib("nplstm card")
    if not 20 <= args.dpi <= 1200:
        raise CLIError(f"--dpi must be between 20 and 1200, got {args.dpi}")
    if not args.trace:
        for name in TRACE_OPTIONS:
            if getattr(args, name) is not None:
                raise CLIError(f"--{name} needs --trace: the values come from a saved trace")
        cell = args.cell or "lstm"
        if args.nonlinearity is not None and cell != "rnn":
            raise CLIError(f"--nonlinearity is an RNN option (--cell rnn), not one of "
                           f"--cell {cell}")
        return _draw(args, None, {"nonlinearity": args.nonlinearity})
    precision = 2 if args.precision is None else args.precision
    if not 0 <= precision <= 6:
        raise CLIError(f"--precision must be between 0 and 6, got {precision}")
    from ..trace import Trace

    if not os.path.isfile(args.trace):
        raise CLIError(f"--trace {args.trace}: no such file")
    trace = Trace.load(args.trace)
    if args.cell is not None and args.cell != trace.mode:
        raise CLIError(f"--trace {args.trace} is a trace of {article(trace.mode.upper())}, not "
                       f"{article(args.cell.upper())}: pass --cell {trace.mode}, or leave --cell "
                       "out")
    if args.nonlinearity is not None and trace.mode != "rnn":
        raise CLIError(f"--nonlinearity is an RNN option, but --trace {args.trace} is a trace "
                       f"of {article(trace.mode.upper())}")
    if args.nonlinearity not in (None, trace.nonlinearity):
        raise CLIError(f"--nonlinearity {args.nonlinearity}: --trace {args.trace} is of an RNN "
                       f"with nonlinearity {trace.nonlinearity}; leave --nonlinearity out")
    where = {name: getattr(args, name) or 0 for name in ("step", "batch", "layer", "direction")}
    for name, limit in (("step", trace.steps), ("batch", trace.batch_size),
                        ("layer", trace.num_layers), ("direction", trace.num_directions)):
        if not 0 <= where[name] < limit:
            raise CLIError(f"--{name} {where[name]}: the trace has {limit} (0..{limit - 1})")
    values = trace.step(where["step"], where["layer"], where["direction"], where["batch"])
    units = None if args.units is None else _units(args.units, trace, precision, values)
    return _draw(args, trace, dict(where, units=units, precision=precision,
                                   nonlinearity=args.nonlinearity))


def _draw(args, trace, options):
    try:
        from .. import card
        fig = card.draw(args.cell, trace, **options)
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    fig.savefig(args.output, dpi=args.dpi)
    print(f"wrote {args.output}")
    return 0
