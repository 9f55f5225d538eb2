"""``nplstm compile``: fill numba's on-disk cache with every compiled kernel.

With the ``[fast]`` extra (numba) installed, nplstm compiles its kernels the
first time a forward pass needs them (seconds) and keeps them in numba's cache;
run this once ahead of time -- in a Docker build, after pip install -- so that
no later process pays for it. Prints each kernel's time (cold: compiled; warm:
loaded from the cache) and where the cache is.
"""

from __future__ import annotations

import argparse
import time

from . import CLIError

EPILOG = """\
examples:
  nplstm compile                    # float32 and float64, every family and schedule
  nplstm compile --dtype float32    # only what float32 layers use
  NUMBA_CACHE_DIR=/opt/numba-cache nplstm compile   # a cache somewhere writable
"""


def register(sub):
    p = sub.add_parser("compile", help="compile the [fast] extra's kernels ahead of time",
                       description=__doc__.split("\n\n")[1], epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtype", choices=("float32", "float64"), action="append",
                   help="dtype to compile for (repeatable; default: both)")
    p.set_defaults(func=run)


def run(args):
    from .. import _numba

    start = time.perf_counter()
    if not _numba.available():  # imports numba
        raise CLIError("nplstm compile needs numba, which is not installed: "
                       "pip install 'nplstm[fast]'")
    import numba

    imported = time.perf_counter() - start
    print(f"numba {numba.__version__} imported in {imported:.2f} s; cache: {_cache_dir()}",
          flush=True)
    times = _numba.precompile(args.dtype or ("float32", "float64"))
    count = times.pop("(kernels compiled)")
    for name, seconds in times.items():
        print(f"  {name:<44} {seconds:6.2f} s")
    total = time.perf_counter() - start
    print(f"{count} kernels ready in {total:.1f} s (numba import included)")
    return 0


def _cache_dir():
    """Where numba keeps nplstm's compiled kernels (its default: beside the source)."""
    import os

    from numba.core.config import CACHE_DIR

    from .. import _numba_kernels

    if CACHE_DIR:
        return CACHE_DIR
    return os.path.join(os.path.dirname(_numba_kernels.__file__), "__pycache__") + (
        " (or numba's user cache directory where that is not writable)")
