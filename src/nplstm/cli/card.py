"""``nplstm card``: draw the one-page reference card of a cell, from the code.

Every label, equation and weight row is read from nplstm.gates. With a trace
saved by ``nplstm trace --save`` (or ``Trace.save``), the card shows the
values of one step.
"""

from __future__ import annotations

import argparse
import os

from . import CLIError

EPILOG = """\
examples:
  nplstm card -o card.pdf                        # printable LSTM card, A4 landscape
  nplstm card --cell gru -o gru.svg
  nplstm trace --save trace.npz && nplstm card --trace trace.npz --step 3 -o card.png
  nplstm card --trace trace.npz --step 0 --batch 1 --layer 1 --direction 1 -o card.png
"""

FORMATS = (".png", ".svg", ".pdf")


def register(sub):
    p = sub.add_parser("card", help="draw the reference card of a cell (png, svg, pdf)",
                       description=__doc__.split("\n\n")[1], epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"),
                   help="cell family (default: lstm, or the trace's)")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="where to write: .png, .svg or .pdf")
    p.add_argument("--trace", metavar="FILE.npz", help="show the values of a saved trace")
    p.add_argument("--step", type=int, help="time step of the trace to show (default: 0)")
    p.add_argument("--batch", type=int, default=0, help="sequence of the batch (default: 0)")
    p.add_argument("--layer", type=int, default=0, help="(default: 0)")
    p.add_argument("--direction", type=int, default=0, help="0 forward, 1 reverse (default: 0)")
    p.add_argument("--units", type=int, default=3, help="values shown per gate (default: 3)")
    p.add_argument("--precision", type=int, default=2, help="decimals shown (default: 2)")
    p.add_argument("--dpi", type=int, default=150, help="resolution of a .png (default: 150)")
    p.set_defaults(func=run)


def run(args):
    ext = os.path.splitext(args.output)[1].lower()
    if ext not in FORMATS:
        raise CLIError(f"-o {args.output}: expected a file name ending in "
                       f"{', '.join(FORMATS)}")
    for name, low, high in (("units", 1, 12), ("precision", 0, 6), ("dpi", 20, 1200)):
        if not low <= getattr(args, name) <= high:
            raise CLIError(f"--{name} must be between {low} and {high}, got "
                           f"{getattr(args, name)}")
    trace = None
    if args.trace:
        from ..trace import Trace

        if not os.path.isfile(args.trace):
            raise CLIError(f"--trace {args.trace}: no such file")
        trace = Trace.load(args.trace)
        for name, value, limit in (("step", args.step or 0, trace.steps),
                                   ("batch", args.batch, trace.batch_size),
                                   ("layer", args.layer, trace.num_layers),
                                   ("direction", args.direction, trace.num_directions)):
            if not 0 <= value < limit:
                raise CLIError(f"--{name} {value}: the trace has {limit} (0..{limit - 1})")
    elif args.step is not None:
        raise CLIError("--step needs --trace: the values come from a saved trace")
    try:
        from .. import card
        fig = card.draw(args.cell, trace, args.step, batch=args.batch, layer=args.layer,
                        direction=args.direction, units=args.units, precision=args.precision)
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    fig.savefig(args.output, dpi=args.dpi)
    print(f"wrote {args.output}")
    return 0
