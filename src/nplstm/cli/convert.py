"""``nplstm convert``: list or convert weight files, without torch."""

from __future__ import annotations

import argparse
import os
import sys

from . import CLIError, check_output

_EPILOG = """\
examples:
  nplstm convert model.pt --list                 keys, shapes and dtypes
  nplstm convert model.pt model.safetensors      .pt -> .safetensors, no torch needed
  nplstm convert ckpt.pt model.npz --key model   take checkpoint["model"]
  nplstm convert ckpt.pt --list --key ema/model  a nested dict: checkpoint["ema"]["model"]

reads torch.save files (zip format and the legacy pre-1.6 one), safetensors and .npz,
recognised by content whatever the name (.pt, .pth, .pth.tar, .bin, .ckpt, ...);
writes .safetensors, .npz. A checkpoint's state_dict is found by itself when it holds
one dict of tensors, or one under 'state_dict', 'model_state_dict' or 'model'; else
--key names it. Pickled code is never run: torch pickles are read by nplstm's own
bounded interpreter, and a file naming anything beyond tensors and plain values is
refused. bfloat16 is widened to float32.

then, in Python:
  lstm.load_state_dict(nplstm.load_weights("model.safetensors"), prefix="lstm.")
"""


def register(subparsers) -> None:
    """Add the ``convert`` subcommand."""
    parser = subparsers.add_parser(
        "convert",
        help="list or convert weight files (.pt, .safetensors, .npz) without torch",
        description="Read a weight file without torch; list its tensors or write them "
        "to .safetensors or .npz.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="IN", help="weight file to read")
    parser.add_argument("output", metavar="OUT", nargs="?",
                        help="file to write: .safetensors or .npz (replaced atomically)")
    parser.add_argument("--list", action="store_true",
                        help="print each tensor's key, shape and dtype")
    parser.add_argument("--key", metavar="PATH",
                        help="the checkpoint entry holding the state_dict, e.g. 'model' "
                        "or 'ema/model'")
    parser.set_defaults(func=run)


def run(args) -> int:
    """List and/or convert ``args.input``; return the exit status.

    SIGTERM acts as Ctrl-C: the output is left as it was, no temporary file remains,
    and the exit status is 130.
    """
    from .._atomic import sigterm_as_interrupt

    with sigterm_as_interrupt():
        try:
            return _run(args)
        except KeyboardInterrupt:
            print("nplstm convert: interrupted"
                  + (f"; {args.output} left as it was" if args.output else ""), file=sys.stderr)
            return 130


def _run(args) -> int:
    from .. import io as weights_io

    if args.output is None and not args.list:
        raise CLIError("give OUT to convert to, or --list to show the tensors")
    suffix = os.path.splitext(args.output or "")[1].lower()
    if args.output is not None and suffix not in weights_io.WRITE_SUFFIXES:
        raise CLIError(f"{args.output}: cannot write {suffix or 'a file without a suffix'}; "
                       f"OUT must end in {' or '.join(weights_io.WRITE_SUFFIXES)}")
    if args.output is not None:
        check_output("OUT", args.output, weights_io.WRITE_SUFFIXES)  # its folder, before work
    if not os.path.exists(args.input):
        raise CLIError(f"{args.input}: no such file")
    if os.path.isdir(args.input):
        raise CLIError(f"{args.input}: is a directory, not a weight file")
    obj = weights_io.load_checkpoint(args.input)
    where, state_dict = weights_io.find_state_dict(obj, args.key, source=args.input)
    if args.list:
        _print_source(args.input, where, obj)
        _print_table(state_dict)
    if args.output is not None:
        weights_io.save_weights(state_dict, args.output)
        print(f"wrote {args.output}: {len(state_dict)} tensors"
              + (f" from {args.input} [{where!r}]" if where else f" from {args.input}"))
    return 0


def _print_source(path: str, where, obj) -> None:
    """Say which entry of a checkpoint the tensors came from."""
    if where is None:
        return
    from ..io.pickle_vm import quote

    others = [quote(k) for k in list(obj)[:20] if k != where.split("/")[0]]
    print(f"{path}: state_dict at [{where!r}]"
          + (f"; also in the file: {', '.join(others)}" if others else ""))


def _print_table(state_dict) -> None:
    """An aligned ``key  shape  dtype`` table with a total line."""
    rows = [(k, str(a.shape), str(a.dtype))
            for k, a in state_dict.items()]
    header = ("key", "shape", "dtype")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(2)]
    for key, shape, dtype in [header] + rows:
        print(f"{key:<{widths[0]}}  {shape:<{widths[1]}}  {dtype}")
    count = sum(a.size for a in state_dict.values())
    nbytes = sum(a.nbytes for a in state_dict.values())
    print(f"{len(rows)} tensors, {count:,} values, {nbytes:,} bytes")
