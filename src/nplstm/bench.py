"""Speed of nplstm against torch and onnxruntime, side by side in one process.

Benchmarks are not tests: this module measures and reports, ``nplstm bench``
prints. Each configuration builds one nplstm layer with random weights and the
same weights in every runtime that is installed:

* ``torch``: ``torch.nn.LSTM``/``GRU``/``RNN`` (and the ``*Cell`` for streams);
* ``onnxruntime``: an ONNX ``LSTM``/``GRU``/``RNN`` node built with the ``onnx``
  helper API from the nplstm weights (gate order converted, see
  :func:`onnx_model`); its output is compared with nplstm's, which proves the
  conversion right;
* ``onnx_reference``: ``onnx.reference.ReferenceEvaluator`` (slow: small
  configurations only).

``nplstm`` runs the engine a plain call takes (the compiled ``[fast]`` one when
numba is installed, see ``layer.engine``); ``nplstm_numpy`` runs the NumPy path
(``NPLSTM_ENGINE=numpy``) beside it, so one run shows nplstm with and without
the extra.

Runners are interleaved (a different order each repeat). So that no runtime's
figure pays for another's threads, each sample is preceded by a pause of
``settle`` seconds (idle worker threads of the previous runtime -- OpenBLAS's,
torch's OpenMP pool -- stop spinning and sleep) and by one untimed call (the
runtime's own pool wakes up). The median of each runner's samples is reported,
and ratios ``nplstm / other`` are the median of the per-repeat ratios (paired:
both measured within the same repeat), with their quartiles to show the noise
(below 1 means nplstm is faster). BLAS threads are set with threadpoolctl,
torch's with ``torch.set_num_threads`` and onnxruntime's in its session options;
:func:`runtime_info` reports what each runtime then uses. Batch-1
configurations also run on one thread when only more were asked for (a small
product split across threads only measures the threads' wake-up).

A configuration is ``(cell, T, B, H)`` with ``input_size = hidden_size = H``;
``mode="stream"`` feeds ``T`` one-step calls, carrying the state, the way a
streaming user calls ``y, state = lstm(x_t, state)``.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

import nplstm

from .bench_env import blas_info, describe, machine_info, runtime_info  # noqa: F401

#: The standard configurations: (T, B, H) whole sequences, then the stream.
DEFAULT_CONFIGS = [(100, 1, 32), (100, 1, 128), (100, 1, 512), (100, 64, 128),
                   (100, 64, 512), (1000, 16, 256)]
DEFAULT_STREAM = (1000, 1, 128)
#: onnx's reference evaluator runs in Python per op: only up to this T*B*H.
REFERENCE_MAX = 100 * 128
_LAYERS = {"lstm": nplstm.LSTM, "gru": nplstm.GRU, "rnn": nplstm.RNN}
#: PyTorch's gate blocks in ONNX order: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h.
ONNX_GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}


@dataclass
class Config:
    cell: str
    T: int
    B: int
    H: int
    mode: str = "sequence"  # or "stream"

    @property
    def label(self):
        kind = "stream" if self.mode == "stream" else f"T{self.T}"
        return f"{self.cell} {kind} B{self.B} H{self.H}"


def _optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None


# --------------------------------------------------------------- builders --


def make_layer(cfg, seed=0):
    """An nplstm layer (float32) with every parameter ~ U(−1/√H, 1/√H)."""
    return _LAYERS[cfg.cell](cfg.H, cfg.H, seed=seed)


def onnx_model(layer):
    """An ONNX model with one LSTM/GRU/RNN node holding ``layer``'s weights.

    ONNX stacks gates in another order (LSTM i,o,f,c; GRU z,r,h), keeps W and R
    as ``[num_directions, G*H, in]`` and the two biases as one ``[Wb, Rb]``
    row; PyTorch's GRU is ONNX's ``linear_before_reset=1``. Single layer,
    forward direction, float32. Inputs ``X, initial_h (, initial_c)``.
    """
    from onnx import TensorProto, helper, numpy_helper

    cell, H = layer.family.name, layer.hidden_size
    order = ONNX_GATE_ORDER[cell]
    sd = layer.state_dict()

    def reorder(a):
        return np.concatenate([a[k * H:(k + 1) * H] for k in order])[None].astype(np.float32)

    W, R = reorder(sd["weight_ih_l0"]), reorder(sd["weight_hh_l0"])
    Bias = np.concatenate([reorder(sd["bias_ih_l0"]), reorder(sd["bias_hh_l0"])], axis=1)
    inits = [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (Bias, "B"))]
    states = ["initial_h"] + (["initial_c"] if cell == "lstm" else [])
    outs = ["Y", "Y_h"] + (["Y_c"] if cell == "lstm" else [])
    attrs = {"hidden_size": H}
    if cell == "gru":
        attrs["linear_before_reset"] = 1
    if cell == "rnn":
        attrs["activations"] = ["Relu" if layer.nonlinearity == "relu" else "Tanh"]
    node = helper.make_node(cell.upper(), ["X", "W", "R", "B", ""] + states, outs, **attrs)
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("X", f32, ["T", "B", layer.input_size])]
    inputs += [helper.make_tensor_value_info(s, f32, [1, "B", H]) for s in states]
    outputs = [helper.make_tensor_value_info("Y", f32, ["T", 1, "B", H])]
    outputs += [helper.make_tensor_value_info(o, f32, [1, "B", H]) for o in outs[1:]]
    graph = helper.make_graph([node], f"nplstm_{cell}", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


def _torch_twin(torch, layer, cell_module=False):
    name = layer.family.name.upper() if not cell_module else layer.family.name.upper() + "Cell"
    name = {"LSTMCELL": "LSTMCell", "GRUCELL": "GRUCell", "RNNCELL": "RNNCell"}.get(name, name)
    cls = getattr(torch.nn, name)
    m = cls(layer.input_size, layer.hidden_size)
    sd = layer.state_dict()
    if cell_module:
        sd = {k[:-3]: v for k, v in sd.items()}  # weight_ih_l0 -> weight_ih
    m.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    return m.eval()


# ---------------------------------------------------------------- runners --


def _runners(cfg, layer, x, threads, with_reference):
    """``{name: callable() -> output (T, B, H) ndarray}`` for every installed runtime."""
    lstm = cfg.cell == "lstm"
    B, H = cfg.B, cfg.H
    runners = {}
    if cfg.mode == "stream":
        cell = {"lstm": nplstm.LSTMCell, "gru": nplstm.GRUCell, "rnn": nplstm.RNNCell}[
            cfg.cell](H, H)
        cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})

        def ours():
            state, ys = None, []
            for x_t in x:  # (B, H): one step per call, as (1, B, H)
                y, state = layer(x_t[None], state)
                ys.append(y)
            return np.concatenate(ys)

        def ours_cell():
            state, ys = None, []
            for x_t in (x[:, 0] if B == 1 else x):  # unbatched (H,) when B == 1
                state = cell(x_t, state)
                ys.append(state[0] if lstm else state)
            return np.stack(ys).reshape(len(x), B, H)

        runners["nplstm"], runners["nplstm_cell"] = ours, ours_cell
    else:
        runners["nplstm"] = lambda: layer(x)[0]
    if layer.engine == "numba":  # the same call on the NumPy path: nplstm without [fast]
        runners["nplstm_numpy"] = _numpy_engine(runners["nplstm"])
    torch = _optional("torch")
    if torch is not None:
        _add_torch(runners, torch, cfg, layer, x)
    ort = _optional("onnxruntime")
    if ort is not None and _optional("onnx") is not None:
        _add_onnx(runners, ort, cfg, layer, x, threads, with_reference)
    return runners


def _numpy_engine(fn):
    """fn run with ``NPLSTM_ENGINE=numpy`` (set around the whole run, not per step)."""
    from ._numba import ENV

    def run():
        before = os.environ.get(ENV)
        os.environ[ENV] = "numpy"
        try:
            return fn()
        finally:
            if before is None:
                del os.environ[ENV]
            else:
                os.environ[ENV] = before

    return run


def _add_torch(runners, torch, cfg, layer, x):
    m = _torch_twin(torch, layer)
    xt = torch.from_numpy(x)
    if cfg.mode == "stream":
        c = _torch_twin(torch, layer, cell_module=True)

        def run():
            with torch.no_grad():
                state, ys = None, []
                for x_t in xt:
                    y, state = m(x_t[None], state)
                    ys.append(y)
                return torch.cat(ys).numpy()

        def run_cell():
            with torch.no_grad():
                state, ys = None, []
                for x_t in xt:
                    state = c(x_t, state)
                    ys.append(state[0] if cfg.cell == "lstm" else state)
                return torch.stack(ys).numpy()

        runners["torch"], runners["torch_cell"] = run, run_cell
    else:
        def run():
            with torch.no_grad():
                return m(xt)[0].numpy()

        runners["torch"] = run


def _add_onnx(runners, ort, cfg, layer, x, threads, with_reference):
    model = onnx_model(layer)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Idle onnxruntime threads would otherwise spin and steal the core the
    # next (interleaved) runner needs.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    zeros = np.zeros((1, cfg.B, cfg.H), np.float32)
    names = ["initial_h"] + (["initial_c"] if cfg.cell == "lstm" else [])

    def run_onnx(run_fn):
        if cfg.mode != "stream":
            return run_fn({"X": x, **{n: zeros for n in names}})[0][:, 0]
        states, ys = [zeros] * len(names), []
        for x_t in x:
            out = run_fn({"X": x_t[None], **dict(zip(names, states))})
            ys.append(out[0][:, 0])
            states = out[1:]
        return np.concatenate(ys)

    runners["onnxruntime"] = lambda: run_onnx(lambda feeds: sess.run(None, feeds))
    if with_reference and cfg.T * cfg.B * cfg.H <= REFERENCE_MAX and cfg.mode != "stream":
        from onnx.reference import ReferenceEvaluator

        ref = ReferenceEvaluator(model)
        runners["onnx_reference"] = lambda: run_onnx(lambda feeds: ref.run(None, feeds))


# ----------------------------------------------------------------- timing --


def _set_threads(n):
    """Limit BLAS (and OpenMP) pools and torch to n threads; returns an undo."""
    undo = []
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(limits=n)
        undo.append(limiter.restore_original_limits)
    except ImportError:
        pass
    torch = _optional("torch")
    if torch is not None:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        undo.append(lambda: torch.set_num_threads(before))
    return lambda: [f() for f in reversed(undo)]


def _sample(fn, min_time, settle=0.0):
    """Seconds per call of fn, repeating it until a sample lasts ``min_time``,
    after ``settle`` seconds of pause and one untimed call (see the module doc)."""
    if settle:
        time.sleep(settle)
    fn()
    number, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / number
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9)) + 1)


def run_config(cfg, threads=1, repeats=5, min_time=0.005, with_reference=True, seed=0,
               settle=0.05):
    """Time one configuration at one thread count: a result dict (times in ms)."""
    layer = make_layer(cfg, seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.uniform(-1, 1, (cfg.T, cfg.B, cfg.H)).astype(np.float32)
    undo = _set_threads(threads)
    try:
        runners = _runners(cfg, layer, x, threads, with_reference)
        runtimes = runtime_info(threads)
        outputs = {name: np.asarray(fn(), dtype=np.float64) for name, fn in runners.items()}
        samples = {name: [] for name in runners}
        names = list(runners)
        for r in range(repeats):  # interleaved, a rotated order every repeat
            for name in names[r % len(names):] + names[:r % len(names)]:
                samples[name].append(_sample(runners[name], min_time, settle))
    finally:
        undo()
    ref = outputs["nplstm"]
    times = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
    ratios, spread = {}, {}
    for ours in ("nplstm", "nplstm_numpy"):
        if ours in samples:
            ratios[ours], spread[ours] = _paired(samples, ours)
    return {**asdict(cfg), "label": cfg.label, "threads": threads, "repeats": repeats,
            "engine": layer.engine, "runtimes": runtimes, "times_ms": times,
            "ratio": ratios["nplstm"], "ratios": ratios, "ratio_quartiles": spread,
            "max_abs_diff": {k: float(np.max(np.abs(v - ref))) for k, v in outputs.items()
                             if k != "nplstm"}}


OTHERS = ("torch", "torch_cell", "onnxruntime", "onnx_reference")


def _paired(samples, ours):
    """Median and quartiles of ``ours / other`` over the repeats (paired samples)."""
    med, quart = {}, {}
    for other in OTHERS:
        if other in samples:
            r = [a / b for a, b in zip(samples[ours], samples[other])]
            med[other] = statistics.median(r)
            q = statistics.quantiles(r, n=4, method="inclusive") if len(r) > 1 else [r[0]] * 3
            quart[other] = [q[0], q[2]]
    return med, quart


def run(configs, threads=(1,), repeats=5, min_time=0.005, with_reference=True, progress=None,
        settle=0.05):
    """Every configuration at every thread count; ``progress(result)`` after each.
    Batch-1 configurations also run on one thread when ``threads`` lacks 1."""
    results = []
    todo = [(n, cfg) for n in threads for cfg in configs]
    if 1 not in threads:
        todo = [(1, cfg) for cfg in configs if cfg.B == 1] + todo
    for n, cfg in todo:
        res = run_config(cfg, n, repeats, min_time, with_reference, settle=settle)
        results.append(res)
        if progress is not None:
            progress(res)
    return {"machine": machine_info(), "blas": blas_info(), "results": results}


def peak_memory(cell, T=100_000, B=1, H=128, seed=0):
    """Peak memory of one call on a long sequence, beyond its output (tracemalloc).

    NumPy reports its array allocations to tracemalloc, so the peak over the call
    minus what was allocated before it is everything the call needed: the output
    itself plus the workspace, which must not grow with T (the input projection
    runs in chunks of ``cells.CHUNK_ELEMENTS`` gate values).
    """
    import tracemalloc

    layer = _LAYERS[cell](H, H, seed=seed)
    x = np.random.default_rng(seed).uniform(-1, 1, (T, B, H)).astype(np.float32)
    layer(x[:2])  # the prepared weights exist before measuring, as in a served model
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        out, _ = layer(x)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return {"cell": cell, "T": T, "B": B, "H": H, "output_bytes": int(out.nbytes),
            "peak_bytes": int(peak), "workspace_bytes": int(peak - out.nbytes)}


def format_memory(rows):
    """One line per :func:`peak_memory` result, in MiB."""
    mib = 1 << 20
    return "\n".join(
        f"  {r['cell']} T{r['T']} B{r['B']} H{r['H']}: peak {r['peak_bytes'] / mib:.1f} MiB, "
        f"of which output {r['output_bytes'] / mib:.1f} MiB, workspace "
        f"{r['workspace_bytes'] / mib:.1f} MiB" for r in rows)


def default_configs(cells=("lstm",)):
    out = []
    for cell in cells:
        out += [Config(cell, *c) for c in DEFAULT_CONFIGS]
        out.append(Config(cell, *DEFAULT_STREAM, mode="stream"))
    return out


# ---------------------------------------------------------------- reports --

COLUMNS = ("nplstm", "nplstm_numpy", "nplstm_cell", "torch", "torch_cell", "onnxruntime",
           "onnx_reference")


def format_table(results, markdown=False):
    """Times (ms) and paired ratios as a text or markdown table, one row per result.

    ``÷x`` is nplstm (its engine in the ``engine`` column) over x; ``numpy÷x`` is
    the NumPy path over x (present when the compiled engine ran).
    """
    cols = [c for c in COLUMNS if any(c in r["times_ms"] for r in results)]
    ratio_cols = [(o, c) for o in ("nplstm", "nplstm_numpy") for c in
                  ("torch", "torch_cell", "onnxruntime")
                  if c in cols and any(o in r.get("ratios", {}) for r in results)]
    head = ["config", "thr", "engine"] + [f"{c} ms" for c in cols] + [
        ("÷" if o == "nplstm" else "numpy÷") + c for o, c in ratio_cols] + ["max abs diff"]
    rows = []
    for r in results:
        row = [r["label"], str(r["threads"]), r.get("engine", "numpy")]
        row += [f"{r['times_ms'][c]:.3g}" if c in r["times_ms"] else "-" for c in cols]
        ratios = r.get("ratios", {"nplstm": r["ratio"]})
        row += [f"{ratios[o][c]:.2f}" if c in ratios.get(o, {}) else "-" for o, c in ratio_cols]
        row.append(f"{max(r['max_abs_diff'].values(), default=0.0):.1e}")
        rows.append(row)
    note = _stream_note(results)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + note
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" if k == 0 else f"{{:>{w}}}" for k, w in enumerate(widths))
    return "\n".join(fmt.format(*row) for row in [head] + rows) + note


def _stream_note(results):
    """A line under the table saying what a stream row's time is: all T calls, not one."""
    steps = sorted({r["T"] for r in results if r.get("mode") == "stream"})
    if not steps:
        return ""
    calls = " or ".join(str(T) for T in steps)
    return (f"\n\nstream rows: the time of all {calls} one-step calls together (state "
            "carried), not of one call" + ("; ms per 1000 calls = µs per call"
                                           if steps == [1000] else ""))

