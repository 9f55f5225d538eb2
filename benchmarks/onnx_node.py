"""One ONNX recurrent node: nplstm.onnx.run_node beside onnxruntime (and onnx's reference).

    PYTHONPATH=src python benchmarks/onnx_node.py [--repeats 9] [--threads 1]

The first rows use silero-vad's real LSTM node (the one its 16 kHz model runs,
read by nplstm.from_onnx), the others random single-layer nodes. Each runtime
gets the same X and initial states; the table is Markdown, times are medians of
interleaved repeats, ratio = nplstm / onnxruntime (below 1: nplstm is faster).
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import platform
import statistics

import numpy as np
import onnxruntime as ort
from onnx.reference import ReferenceEvaluator

import nplstm
from nplstm import bench
from nplstm.onnx import run_node

H = 128


def silero_node():
    spec = importlib.util.find_spec("silero_vad")  # its data files only
    path = (pathlib.Path(spec.submodule_search_locations[0]) / "data"
            / "silero_vad_16k_op15.onnx")
    return nplstm.from_onnx(path)["/model/decoder/If_1/then_branch//model/decoder/rnn/LSTM"]


def cases():
    node = silero_node()
    yield "silero-vad LSTM, 1 step, N=1", node, 1, 1
    yield "silero-vad LSTM, 100 steps, N=1", node, 100, 1
    for cls in (nplstm.LSTM, nplstm.GRU, nplstm.RNN):
        yield f"random {cls.__name__}, 100 steps, N=16", cls(H, H, seed=0), 100, 16


def runners(layer, L, N, threads, reference):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (L, N, layer.input_size)).astype(np.float32)
    states = {"initial_h": rng.uniform(-1, 1, (1, N, H)).astype(np.float32)}
    if layer.family.name == "lstm":
        states["initial_c"] = rng.uniform(-1, 1, (1, N, H)).astype(np.float32)
    model = bench.onnx_model(layer)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    feeds = {"X": X, **states}
    out = {"nplstm": lambda: run_node(layer, X, **states)[0],
           "onnxruntime": lambda: sess.run(None, feeds)[0]}
    if reference:
        ref = ReferenceEvaluator(model)
        out["onnx reference"] = lambda: ref.run(None, feeds)[0]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    undo = bench._set_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"float32, H={H}, onnxruntime {ort.__version__}, nplstm engine "
          f"{nplstm.LSTM(H, H).engine} (NPLSTM_ENGINE chooses)")
    print("| node | nplstm ms | onnxruntime ms | onnx reference ms | ÷onnxruntime | max diff |")
    print("|---|---|---|---|---|---|")
    try:
        for label, layer, L, N in cases():
            run = runners(layer, L, N, args.threads, reference=L * N <= 100)
            outs = {k: f() for k, f in run.items()}
            diff = max(float(np.abs(v - outs["nplstm"]).max()) for v in outs.values())
            samples = {k: [] for k in run}
            for r in range(args.repeats):  # interleaved, rotated
                names = list(run)[r % len(run):] + list(run)[:r % len(run)]
                for k in names:
                    samples[k].append(bench._sample(run[k], 0.02))
            ms = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
            ref = f"{ms['onnx reference']:.3g}" if "onnx reference" in ms else "-"
            print(f"| {label} | {ms['nplstm']:.3g} | {ms['onnxruntime']:.3g} | {ref} | "
                  f"{ms['nplstm'] / ms['onnxruntime']:.2f} | {diff:.1e} |")
    finally:
        undo()


if __name__ == "__main__":
    main()
