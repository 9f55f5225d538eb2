"""The two worked examples behind ``nplstm train`` (the CLI prints; the math is nplstm's)."""

from __future__ import annotations

import math
import time

import numpy as np

from .. import optim
from .. import train as T
from . import CLIError


def _epochs(args, model, batch_fn, loss, Progress, evaluate, label, last=False):
    """The shared loop: epochs of ``args.steps`` Adam steps, evaluate after each.

    last: the loss reads only the last step (see :func:`nplstm.train.train_step`).

    Returns ``(log, saturation history, steps per second)``; log columns: step,
    train loss (mean over the epoch), validation loss.
    """
    opt = optim.Adam(model.modules, lr=args.lr)
    rng = np.random.default_rng(args.seed)
    log = {"step": [], "train_loss": [], "val_loss": []}
    sat, rates = [], []
    for epoch in range(1, args.epochs + 1):
        bar = Progress(args.steps, f"{label} epoch {epoch}/{args.epochs}", not args.no_progress)
        losses = []
        for _ in range(args.steps):
            x, y = batch_fn(rng)
            value, _, _ = T.train_step(model, opt, x, y, loss, args.clip, last)
            losses.append(value)
            bar.update(value)
        rates.append(bar.close())
        val, trace = evaluate()
        sat.append(trace.saturation())
        log["step"].append(epoch * args.steps)
        log["train_loss"].append(float(np.mean(losses)))
        log["val_loss"].append(val)
        print(f"{label} epoch {epoch:>3}/{args.epochs}  train loss {np.mean(losses):.4f}  "
              f"validation loss {val:.4f}  {rates[-1]:.0f} steps/s", flush=True)
    return log, sat, float(np.median(rates))


# ------------------------------------------------------------------ forecast --


def _co2(args):
    y = T.load_co2()  # (T,) ppm
    d = np.diff(y)  # (T-1,): d[k] = y[k+1] − y[k]
    n_train = int(0.8 * d.size)
    if args.window >= n_train - 1:
        raise CLIError(f"--window must be < {n_train - 1} (the training weeks), got "
                       f"{args.window}")
    mean, std = float(d[:n_train].mean()), float(d[:n_train].std())
    return y, d, n_train, mean, std


def forecast(args, out, Progress, report):
    """Train on the first 80% of weekly changes, validate on the last 20%."""
    y, d, n_train, mean, std = _co2(args)
    z = ((d - mean) / std).astype(np.float32)  # (T-1,) standardized weekly changes
    W = args.window
    # validation: every target z[k] with k >= n_train, from the W changes before it
    ks = np.arange(max(n_train, W), z.size)
    val_x = np.stack([z[k - W:k] for k in ks], axis=1)[:, :, None]  # (W, M, 1)
    val_t = z[ks]  # (M,)

    def batch_fn(rng):
        s = rng.integers(0, n_train - W, size=args.batch)
        idx = s[None, :] + np.arange(W)[:, None]  # (W, N)
        return z[idx][:, :, None], z[idx + 1][:, :, None]  # inputs, next changes

    long_x = np.stack([z[k - 150:k] for k in ks[:16]], axis=1)[:, :, None]  # (150, 16, 1)
    flows = {}

    def run(kind):
        model = T.Model.build(kind, 1, args.hidden, 1, args.layers, seed=args.seed)
        flows[kind.upper()] = {"at initialisation": T.grad_per_step(model, long_x)}

        def evaluate():
            pred, trace = model.forward(val_x)
            return float(np.mean((pred[-1, :, 0] - val_t) ** 2)), trace

        t0 = time.perf_counter()
        log, sat, rate = _epochs(args, model, batch_fn, "mse", Progress, evaluate, kind)
        flows[kind.upper()]["trained"] = T.grad_per_step(model, long_x)
        pred = model.forward(val_x)[0][-1, :, 0] * std + mean  # (M,) ppm change
        return model, log, sat, rate, pred, time.perf_counter() - t0

    model, log, sat, rate, pred, seconds = run(args.cell)
    truth = y[ks + 1]  # y[k+1] = y[k] + d[k]
    naive = y[ks]  # last value
    forecast = y[ks] + pred
    rmse = float(np.sqrt(np.mean((forecast - truth) ** 2)))
    rmse_naive = float(np.sqrt(np.mean((naive - truth) ** 2)))
    mae = float(np.mean(np.abs(forecast - truth)))
    mae_naive = float(np.mean(np.abs(naive - truth)))
    print(f"validation ({ks.size} weeks, {1958 + (ks[0] + 1) / 52.18:.0f}-2001): "
          f"RMSE {rmse:.3f} ppm vs naive last value {rmse_naive:.3f} ppm "
          f"({100 * (1 - rmse / rmse_naive):.1f}% lower); MAE {mae:.3f} vs {mae_naive:.3f}; "
          f"trained in {seconds:.1f} s ({rate:.0f} steps/s)")
    meta = {"task": "forecast", "cell": args.cell, "input_size": 1, "hidden_size": args.hidden,
            "num_layers": args.layers, "window": W, "mean": mean, "std": std,
            "val_rmse": rmse, "naive_rmse": rmse_naive, "val_mae": mae, "naive_mae": mae_naive,
            "seconds": seconds}
    plots = {}
    if args.plot:
        from .. import plot

        other = "rnn" if args.cell != "rnn" else "lstm"
        print(f"--plot: training {other.upper()} the same way, for the gradient-flow picture")
        o_log = run(other)[1]
        plots = {"loss.png": plot.loss_curves({args.cell.upper(): log, other.upper(): o_log},
                                              ylabel="MSE (standardized weekly change)"),
                 "saturation.png": plot.saturation_history(log["step"], sat),
                 "gradflow.png": plot.grad_flow(flows),
                 "forecast.png": plot.forecast(1958.24 + (ks + 1) / 52.18, truth, forecast,
                                               naive, "CO2 at Mauna Loa (ppm)")}
    return report(out, model, meta, log, plots)


# --------------------------------------------------------------------- chars --


def chars(args, out, Progress, report):
    """Next-character cross-entropy on 90% of the text, validated on the rest."""
    try:
        text = T.load_text(args.file)
    except OSError as exc:
        raise CLIError(f"FILE {args.file}: cannot read it ({exc.strerror})") from None
    vocab = sorted(set(text))
    V, W = len(vocab), args.window
    index = {c: i for i, c in enumerate(vocab)}
    codes = np.array([index[c] for c in text])  # (len(text),) ints in [0, V)
    n_train = int(0.9 * codes.size)
    if n_train - W - 1 < 1 or codes.size - n_train - W - 1 < 1:
        raise CLIError(f"the text ({codes.size} characters) is too short for --window {W}")
    eye = np.eye(V, dtype=np.float32)
    rng_val = np.random.default_rng(args.seed + 1)
    vs = n_train + rng_val.integers(0, codes.size - n_train - W - 1, size=64)
    v_idx = vs[None, :] + np.arange(W)[:, None]  # (W, 64)

    def batch_fn(rng):
        s = rng.integers(0, n_train - W - 1, size=args.batch)
        idx = s[None, :] + np.arange(W)[:, None]  # (W, N)
        return eye[codes[idx]], codes[idx + 1]  # (W, N, V) one-hot, (W, N) targets

    model = T.Model.build(args.cell, V, args.hidden, V, args.layers, seed=args.seed)

    def evaluate():
        from ..losses import cross_entropy

        logits, trace = model.forward(eye[codes[v_idx]])
        loss, _ = cross_entropy(logits.reshape(-1, V), codes[v_idx + 1].reshape(-1))
        if args.sample:
            rng = np.random.default_rng(args.seed)
            print("  sample: " + T.sample_chars(model, vocab, "\n", args.sample,
                                                args.temperature, rng).replace("\n", "\n  | "))
        return loss, trace

    print(f"text: {codes.size} characters, vocabulary {V} (uniform loss ln {V} = "
          f"{math.log(V):.3f})")
    t0 = time.perf_counter()
    log, sat, rate = _epochs(args, model, batch_fn, "ce", Progress, evaluate, args.cell)
    seconds = time.perf_counter() - t0
    print(f"validation loss {log['val_loss'][-1]:.3f} nats/char vs ln {V} = "
          f"{math.log(V):.3f}; trained in {seconds:.1f} s ({rate:.0f} steps/s)")
    meta = {"task": "chars", "cell": args.cell, "input_size": V, "hidden_size": args.hidden,
            "num_layers": args.layers, "vocab": "".join(vocab), "window": W,
            "val_loss": log["val_loss"][-1], "uniform_loss": math.log(V), "seconds": seconds}
    plots = {}
    if args.plot:
        from .. import plot

        plots = {"loss.png": plot.loss_curves({args.cell.upper(): log}, baseline=math.log(V),
                                              baseline_label=f"uniform: ln {V}",
                                              ylabel="cross-entropy (nats/char)"),
                 "saturation.png": plot.saturation_history(log["step"], sat)}
    return report(out, model, meta, log, plots)


# -------------------------------------------------------------------- memory --


def _memory_run(kind, args, batch_fn, val_x, val_c, Progress):
    """Train one model; returns it, its log (with val_acc) and its gradient flows."""
    from ..losses import cross_entropy

    fb = args.forget_bias if kind == "lstm" else 0.0
    model = T.Model.build(kind, 1, args.hidden, 2, seed=args.seed, forget_bias=fb)
    flow_x = val_x[:, :16]  # (delay + 1, 16, 1)
    flow = {"at initialisation": T.grad_per_step(model, flow_x)}
    accs = []

    def evaluate():
        y, trace = model.forward(val_x)
        accs.append(float(np.mean(y[-1].argmax(-1) == val_c)))
        return cross_entropy(y[-1], val_c)[0], trace

    log, _, _ = _epochs(args, model, batch_fn, "ce", Progress, evaluate, kind, last=True)
    log["val_acc"] = accs
    flow["trained"] = T.grad_per_step(model, flow_x)
    return model, log, flow


def memory(args, out, Progress, report):
    """An LSTM and a plain tanh RNN, trained alike on the two-sequence problem.

    The class (the first input, ±1) must be read out after ``args.delay``
    steps of noise (Bengio et al. 1994; Hochreiter & Schmidhuber 1997, 5.3):
    same hidden size, same batches, same Adam, same number of steps.
    """
    val_x, val_c = T.two_sequence(np.random.default_rng(args.seed + 1), args.delay, 512)

    def batch_fn(rng):
        x, c = T.two_sequence(rng, args.delay, args.batch)
        return x, c[None]  # (L, N, 1), (1, N) classes read at the last step

    logs, flows, result = {}, {}, {}
    for kind in ("lstm", "rnn"):
        t0 = time.perf_counter()
        model, log, flow = _memory_run(kind, args, batch_fn, val_x, val_c, Progress)
        seconds = time.perf_counter() - t0
        logs[kind.upper()], flows[kind.upper()], result[kind] = log, flow, (model, seconds)
        r0, r1 = (flow[k][0] / flow[k][-1] for k in flow)
        print(f"{kind.upper():>4}: validation accuracy {log['val_acc'][-1]:.1%}, loss "
              f"{log['val_loss'][-1]:.4f} (chance 50%, ln 2 = {math.log(2):.4f}); gradient "
              f"reaching the class input {args.delay} steps back, relative to the last "
              f"step: {r0:.1e} at initialisation, {r1:.1e} trained; {seconds:.1f} s",
              flush=True)
    meta = {"task": "memory", "cell": "lstm", "input_size": 1, "hidden_size": args.hidden,
            "num_layers": 1, "delay": args.delay, "forget_bias": args.forget_bias,
            "chance_loss": math.log(2), "chance_acc": 0.5,
            **{f"{k}_{m}": v for k in result for m, v in (
                ("val_acc", logs[k.upper()]["val_acc"][-1]),
                ("val_loss", logs[k.upper()]["val_loss"][-1]),
                ("seconds", result[k][1]))}}
    table = {"step": logs["LSTM"]["step"],
             **{f"{k.lower()}_{c}": logs[k][c] for k in logs
                for c in ("train_loss", "val_loss", "val_acc")}}
    plots = {}
    if args.plot:
        from .. import plot

        plots = {"memory.png": plot.memory_contrast(logs, flows, args.delay, math.log(2))}
    return report(out, result["lstm"][0], meta, table, plots)
