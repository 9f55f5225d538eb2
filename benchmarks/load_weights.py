"""Time nplstm.load_weights against torch.load on a ~100 MB LSTM state_dict.

    PYTHONPATH=src python benchmarks/load_weights.py [--repeats 7]

Both torch.save formats (zip, and legacy with _use_new_zipfile_serialization=False)
are timed; torch.load runs with weights_only=True (its safe loader, the fair
comparison) on CPU. The best of --repeats runs is reported, wall and CPU time (the
machine's noise only ever adds time), with the results checked equal bit for bit.
nplstm also checks every storage's CRC-32, which torch.load does not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import torch

import nplstm


def best(func, repeats: int) -> tuple[float, float]:
    """The best wall time and the best CPU time (process time: on a shared machine the
    CPU time is the steadier measure of the work done) of ``repeats`` runs."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        func()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    sd = torch.nn.LSTM(1024, 1024, num_layers=3).state_dict()  # 25.2 M float32 values
    results = {"machine": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "torch": torch.__version__, "formats": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, new in (("zip", True), ("legacy", False)):
            path = os.path.join(tmp, f"{fmt}.pt")
            torch.save(sd, path, _use_new_zipfile_serialization=new)
            ours = nplstm.load_weights(path)
            theirs = torch.load(path, weights_only=True)
            assert all(ours[k].tobytes() == theirs[k].numpy().tobytes() for k in theirs)
            t_ours = best(lambda p=path: nplstm.load_weights(p), args.repeats)
            t_torch = best(lambda p=path: torch.load(p, weights_only=True), args.repeats)
            results["formats"][fmt] = {
                "file_mb": round(os.path.getsize(path) / 1e6, 1),
                "nplstm_wall_s": round(t_ours[0], 4), "torch_load_wall_s": round(t_torch[0], 4),
                "nplstm_cpu_s": round(t_ours[1], 4), "torch_load_cpu_s": round(t_torch[1], 4),
                "ratio_cpu": round(t_ours[1] / t_torch[1], 2)}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
