"""Run nplstm's benchmarks: the same as `nplstm bench` (see `--help`).

    python benchmarks/run.py --cell lstm --cell gru --cell rnn --threads 1,2 --json out.json
"""

import sys

from nplstm.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
