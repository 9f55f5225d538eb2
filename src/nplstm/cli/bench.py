"""``nplstm bench``: nplstm's speed against torch and onnxruntime, side by side.

Runs a standard set of configurations (or those named with --config) for each
--cell and --threads, interleaving the runtimes (nplstm's compiled and NumPy
engines, torch, onnxruntime), and prints median times, paired ratios (nplstm /
other: below 1 is faster), what each runtime computes with, and the largest
output difference.
"""

from __future__ import annotations

import argparse
import json

from .._atomic import atomic_write
from . import CLIError, check_output

EPILOG = """\
examples:
  nplstm bench                                   # the standard table, LSTM, 1 thread
  nplstm bench --cell gru --cell rnn --threads 1,2 --json bench.json
  nplstm bench --config 100,1,128 --config 1000,16,256 --repeats 9
  nplstm bench --config 1000,1,128 --stream      # one step per call, state carried
  nplstm bench --memory --cell gru               # peak memory, T=100,000 B=1 H=128
"""


def register(sub):
    p = sub.add_parser("bench", help="time nplstm against torch and onnxruntime",
                       description=__doc__.split("\n\n")[1], epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), action="append",
                   help="cell type (repeatable; default: lstm)")
    p.add_argument("--config", action="append", metavar="T,B,H",
                   help="sequence length, batch, hidden size (= input size); repeatable; "
                   "default: six standard sizes and a 1000-step stream")
    p.add_argument("--stream", action="store_true",
                   help="run the --config entries as T one-step calls, state carried")
    p.add_argument("--threads", default="1", metavar="N[,N...]",
                   help="BLAS/torch/onnxruntime thread counts to run (default: 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed samples per runner (default: 5)")
    p.add_argument("--min-time", type=float, default=0.005, metavar="SECONDS",
                   help="each sample repeats the call until it lasts this long (default: 0.005)")
    p.add_argument("--settle", type=float, default=0.05, metavar="SECONDS",
                   help="pause before each sample, so that the previous runtime's idle "
                   "threads stop spinning (default: 0.05)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip onnx's (slow) reference evaluator")
    p.add_argument("--memory", nargs="?", const="100000,1,128", metavar="T,B,H",
                   help="also measure the peak memory of one call on a long sequence "
                   "(tracemalloc; default 100000,1,128); --memory alone runs only this "
                   "when no --config is given")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.set_defaults(func=run)


def _ints(text, what, count=None):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise CLIError(f"{what} must be comma-separated integers, got {text!r}") from None
    if (count and len(values) != count) or any(v < 1 for v in values):
        raise CLIError(f"{what} must be {count or 'some'} integers >= 1, got {text!r}")
    return values


def configs(args):
    from ..bench import Config, default_configs

    cells = args.cell or ["lstm"]
    if not args.config:
        if args.stream:
            raise CLIError("--stream applies to --config entries; give at least one")
        return default_configs(cells)
    mode = "stream" if args.stream else "sequence"
    return [Config(cell, *_ints(c, "--config", 3), mode=mode) for cell in cells
            for c in args.config]


def run(args):
    from .. import bench

    if args.repeats < 1:
        raise CLIError(f"--repeats must be >= 1, got {args.repeats}")
    if args.min_time < 0:
        raise CLIError(f"--min-time must be >= 0, got {args.min_time}")
    if args.json:
        check_output("--json", args.json, (".json",))  # before minutes of timing
    if args.settle < 0:
        raise CLIError(f"--settle must be >= 0, got {args.settle}")
    threads = _ints(args.threads, "--threads")
    memory = None if args.memory is None else _ints(args.memory, "--memory", 3)
    todo = configs(args) if args.config or args.memory is None else []
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        raise CLIError("bench sets BLAS threads with threadpoolctl, which is not installed: "
                       "pip install 'nplstm[bench]'") from None
    info = {"machine": bench.machine_info(), "blas": bench.blas_info()}
    print(bench.describe(info), flush=True)
    if todo:
        print(f"{len(todo)} configuration{'s' * (len(todo) != 1)} x threads {threads}, "
              f"{args.repeats} interleaved repeats, median times; ratio = median of paired "
              "nplstm / other (< 1: nplstm faster)\n", flush=True)
    done = []

    def progress(result):
        done.append(result)
        calls = f" for {result['T']} calls" if result.get("mode") == "stream" else ""
        print(f"  {result['label']} threads={result['threads']}: nplstm "
              f"{result['times_ms']['nplstm']:.3g} ms{calls}", flush=True)

    out = bench.run(todo, threads, args.repeats, args.min_time, not args.no_reference, progress,
                    settle=args.settle)
    if todo:
        print()
        print(bench.format_table(out["results"], markdown=args.markdown))
        seen = {}
        for r in out["results"]:
            seen.setdefault(r["threads"], r["runtimes"])
        for n, runtimes in seen.items():
            print(f"\nruntimes at {n} thread{'s' if n > 1 else ''}:")
            for name, what in runtimes.items():
                print(f"  {name}: {what}")
    if memory is not None:
        out["memory"] = [bench.peak_memory(cell, *memory) for cell in args.cell or ["lstm"]]
        print("\nPeak memory of one call (float32, tracemalloc):")
        print(bench.format_memory(out["memory"]))
    if args.json:
        with atomic_write(args.json) as f:
            f.write(json.dumps(out, indent=1).encode())
        print(f"\nwrote {args.json}")
    return 0
