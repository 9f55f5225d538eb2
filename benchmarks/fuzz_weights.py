"""Long fuzz run of nplstm's weight readers (the suite's tests/test_io_fuzz.py, longer).

    PYTHONPATH=src python benchmarks/fuzz_weights.py --cases 100000 --workers 2

Each case mutates a valid file (torch.save zip and legacy, safetensors, .npz stored
and deflated; tests/weights_fuzz.py) and loads it in a worker process. The parent
watches the workers: a case that runs past --timeout is a hang, a worker killed by a
signal is a crash; both are reported by case number (replay one with case()) and the
worker restarts after them. Reported: cases, loaded, refused (WeightsFormatError), other exceptions
(by type, first input kept), hangs, crashes, the slowest load (CPU time, and the
wall time, which a busy machine inflates), and the workers' peak
resident memory (ru_maxrss) next to their baseline after imports.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

# A worker imports torch to make its seeds; on a busy machine that takes a while.
_STARTUP_S = 300

EDIT_KINDS = ("set", "opcode", "insert", "delete", "repeat", "cut")


def case(seed: int, index: int, names: list[str]):
    """The seed file name, edits and zip-entry choice of case ``index``."""
    rng = random.Random(seed * 1_000_003 + index)
    edits = [(rng.choice(EDIT_KINDS), rng.random(), rng.randrange(256))
             for _ in range(rng.randint(1, 8))]
    inside = None if rng.random() < 0.5 else rng.random()
    return rng.choice(names), edits, inside


def worker(args) -> None:
    """Run cases ``start .. start+count``, writing each index to --progress first."""
    from weights_fuzz import load, mutate, seeds

    import nplstm.io as nio  # noqa: F401 - imported before the baseline is taken

    blobs = seeds()
    names = sorted(blobs)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    others, slowest, slowest_case, slowest_wall = {}, 0.0, None, 0.0
    path = os.path.join(args.tmp, f"case-{os.getpid()}")
    with open(args.progress, "w") as progress:
        for index in range(args.start, args.start + args.count):
            progress.write(f"{index}")  # the case in flight, if the worker dies
            progress.flush()
            name, edits, inside = case(args.seed, index, names)
            with open(path, "wb") as f:
                f.write(mutate(blobs[name], edits, inside))
            start, wall = time.process_time(), time.perf_counter()
            try:
                outcome = load(path)
            except Exception as exc:  # noqa: BLE001 - what the fuzzer looks for
                outcome = "other"
                others.setdefault(f"{type(exc).__name__} ({name})", [index, str(exc)[:200]])
            if time.process_time() - start > slowest:
                slowest, slowest_case = time.process_time() - start, f"{index} ({name})"
            slowest_wall = max(slowest_wall, time.perf_counter() - wall)
            progress.write(f" {outcome}\n")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"others": others, "slowest_s": slowest, "slowest_case": slowest_case,
                      "slowest_wall_s": slowest_wall,
                      "baseline_kib": baseline, "peak_kib": peak}))


def run_chunk(args, start: int, count: int, results: dict) -> int:
    """Run cases from ``start`` in one worker; return the next index to run."""
    progress = os.path.join(args.tmp, f"progress-{start}")
    cmd = [sys.executable, __file__, "--worker", "--start", str(start), "--count", str(count),
           "--seed", str(args.seed), "--progress", progress, "--tmp", args.tmp]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last, since = None, time.monotonic()
    while child.poll() is None:
        time.sleep(0.2)
        current = _read_progress(progress)[1]
        if current != last:
            last, since = current, time.monotonic()
        elif time.monotonic() - since > (args.timeout if current else _STARTUP_S):
            child.kill()
            child.communicate()
            return _failed(results, "hangs", progress, "")
    out, err = child.communicate()
    if child.returncode != 0:
        return _failed(results, "crashes", progress, f"exit {child.returncode}: {err[-300:]}")
    results["counts"].update(_read_progress(progress)[0])
    summary = json.loads(out)
    for kind, example in summary["others"].items():
        results["others"].setdefault(kind, example)
    if summary["slowest_s"] > results["slowest_s"]:
        results["slowest_s"], results["slowest_case"] = summary["slowest_s"], summary["slowest_case"]
    for key in ("peak_kib", "baseline_kib", "slowest_wall_s"):
        results[key] = max(results[key], summary[key])
    return start + count


def _read_progress(path: str):
    """``(Counter of finished outcomes, the case in flight or None)``."""
    try:
        with open(path) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return collections.Counter(), None
    done = collections.Counter(line.split()[1] for line in lines if len(line.split()) == 2)
    in_flight = next((line for line in lines if len(line.split()) == 1), None)
    return done, in_flight


def _failed(results, kind: str, progress: str, detail: str) -> int:
    """Record a hang or crash at the case in flight; resume after it."""
    done, in_flight = _read_progress(progress)
    results["counts"].update(done)
    results[kind].append({"case": int(in_flight), "detail": detail})
    return int(in_flight) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=2_000, help="cases per worker process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds: a hang")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    results = {"counts": collections.Counter(), "others": {}, "hangs": [], "crashes": [],
               "slowest_s": 0.0, "slowest_case": None, "slowest_wall_s": 0.0, "peak_kib": 0, "baseline_kib": 0}
    began = time.time()
    from concurrent.futures import ThreadPoolExecutor

    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp

        def run_range(first: int) -> None:
            at, end = first, min(first + args.chunk, args.cases)
            while at < end:
                at = run_chunk(args, at, end - at, results)

        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(run_range, range(0, args.cases, args.chunk)))
    counts = results["counts"]
    print(json.dumps({
        "cases": args.cases, "seed": args.seed, "seconds": round(time.time() - began, 1),
        "loaded": counts["loaded"], "refused": counts["refused"],
        "other_exceptions": counts["other"], "other_kinds": results["others"],
        "hangs": results["hangs"], "crashes": results["crashes"],
        "slowest_load_cpu_s": round(results["slowest_s"], 3),
        "slowest_case": results["slowest_case"],
        "slowest_load_wall_s": round(results["slowest_wall_s"], 3),
        "worker_peak_rss_mib": round(results["peak_kib"] / 1024, 1),
        "worker_baseline_rss_mib": round(results["baseline_kib"] / 1024, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
