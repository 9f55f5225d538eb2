"""Training by hand: a recurrent layer + a Linear head, backprop through time, an optimizer.

The two worked examples of ``nplstm train`` are built from these pieces; the
library never prints, so progress goes to a ``callback``. Data shipped with
the package (``nplstm/data``, sources in ``data/SOURCES.md``):

* ``co2_weekly.csv``: Mauna Loa CO2 weekly means 1958–2001 (Keeling & Whorf,
  Scripps/NOAA, public domain), as ``statsmodels.datasets.co2`` ships them.
* ``shakespeare.txt``: the first ~100 kB of Karpathy's tiny-shakespeare
  (``char-rnn/data/tinyshakespeare/input.txt``; Shakespeare, public domain).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cell_modules import Linear
from .layers import GRU, LSTM, RNN
from .losses import cross_entropy, mse_loss
from .optim import clip_grad_norm_

DATA = Path(__file__).parent / "data"
LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


def load_co2():
    """Weekly CO2 at Mauna Loa in ppm, ``(2284,)`` float64, from 1958-03-29.

    The 59 missing weeks are filled by linear interpolation between their
    neighbours (the series has no missing first or last value).
    """
    rows = [line.split(",") for line in (DATA / "co2_weekly.csv").read_text().splitlines()
            if line and not line.startswith(("#", "date"))]
    y = np.array([float(v) if v else np.nan for _, v in rows])  # (T,)
    gap = np.isnan(y)
    t = np.arange(y.size)
    y[gap] = np.interp(t[gap], t[~gap], y[~gap])
    return y


def load_text(path=None):
    """The text to model: ``path`` (UTF-8) or the bundled Shakespeare excerpt."""
    p = DATA / "shakespeare.txt" if path is None else Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not UTF-8 text ({exc.reason})") from None
    if len(text) < 2:
        raise ValueError(f"{p}: needs at least 2 characters of text, got {len(text)}")
    return text


@dataclass
class Model:
    """A recurrent layer (time-major) with a Linear head applied at every step."""

    rnn: object
    fc: Linear

    @classmethod
    def build(cls, kind, input_size, hidden_size, output_size, num_layers=1, seed=0,
              dtype=np.float32, forget_bias=0.0):
        """PyTorch's initialisation, U(−1/√H, 1/√H), drawn from ``seed``.

        forget_bias: added to every LSTM layer's ``bias_ih`` forget slice (rows
        H:2H, gate order i, f, g, o), so σ(f) starts near σ(forget_bias): +1 is
        Gers, Schmidhuber & Cummins (2000) and Jozefowicz, Zaremba & Sutskever
        (2015)'s advice for remembering across long delays. LSTM only.
        """
        if forget_bias and kind != "lstm":
            raise ValueError(f"forget_bias is for an LSTM, got kind {kind!r}")
        rng = np.random.default_rng(seed)
        rnn = LAYERS[kind](input_size, hidden_size, num_layers, dtype=dtype, seed=rng)
        if forget_bias:
            sd = rnn.state_dict()
            for k in sd:
                if k.startswith("bias_ih"):
                    sd[k][hidden_size:2 * hidden_size] += forget_bias  # (H,) forget rows
            rnn.load_state_dict(sd)
        return cls(rnn, Linear(hidden_size, output_size, dtype=dtype, seed=rng))

    @property
    def modules(self):
        """``{"rnn": layer, "fc": head}``, as optimizers and state dicts key them."""
        return {"rnn": self.rnn, "fc": self.fc}

    def state_dict(self):
        """``{"rnn.weight_ih_l0": ..., "fc.weight": ...}``: torch's keys for a module
        with attributes ``rnn`` (nn.LSTM/GRU/RNN) and ``fc`` (nn.Linear)."""
        return {f"{p}.{k}": v for p, m in self.modules.items() for k, v in
                m.state_dict().items()}

    def forward(self, x, hx=None):
        """x ``(L, N, in)`` -> ``(y (L, N, out), trace)``."""
        trace = self.rnn.trace(x, hx)
        return self.fc(trace.output), trace

    def grads(self, trace, dy):
        """dL/dy ``(L, N, out)`` -> ``({"rnn.*", "fc.*"} grads, Grads of the layer)``."""
        g_fc = self.fc.backward(trace.output, dy)
        g_rnn = self.rnn.backward(trace, g_fc.input)
        out = {f"rnn.{k}": v for k, v in g_rnn.params.items()}
        out.update({f"fc.{k}": v for k, v in g_fc.params.items()})
        return out, g_rnn


def train_step(model, opt, x, target, loss="mse", clip=1.0, last=False):
    """Forward, loss, backward, clip, step. Returns ``(loss, grad norm, trace)``.

    loss ``"mse"`` (target like the output) or ``"ce"`` (target ``(L, N)`` ints).
    last: the loss reads only the last step's output (target ``(1, N, out)`` or
    ``(1, N)``); the other steps get zero gradient from the head.
    """
    y, trace = model.forward(x)
    read = y[-1:] if last else y  # (1 or L, N, out)
    if loss == "mse":
        value, d_read = mse_loss(read, target)
    else:
        V = y.shape[-1]
        value, d_read = cross_entropy(read.reshape(-1, V), target.reshape(-1))
        d_read = d_read.reshape(read.shape)  # (1 or L, N, V)
    dy = np.zeros_like(y)
    dy[-d_read.shape[0]:] = d_read  # (L, N, out)
    grads, _ = model.grads(trace, dy)
    norm = clip_grad_norm_(grads, clip) if clip else float("nan")
    opt.step(grads)
    return value, norm, trace


def grad_per_step(model, x):
    """‖dL/dx_t‖ for every t when the loss reads only the last step's prediction.

    x ``(L, N, in)``; L = Σ y_L (the head's outputs at the last step). Returns
    ``(L,)`` float64: how much gradient reaches each earlier input, averaged over N.
    This is what vanishes in a plain RNN and survives in an LSTM.
    """
    y, trace = model.forward(x)
    dy = np.zeros_like(y)
    dy[-1] = 1.0
    _, g = model.grads(trace, dy)
    # float64: squaring a float32 gradient of 1e-23 underflows to 0 (norm 0), though
    # the gradient itself is not 0.
    return np.linalg.norm(g.input.astype(np.float64), axis=-1).mean(axis=1)  # (L,)


def two_sequence(rng, delay, batch, noise_var=0.2, dtype=np.float32):
    """A batch of Bengio et al.'s two-sequence problem: a class read across ``delay`` steps.

    Bengio, Simard & Frasconi (1994), "Learning long-term dependencies with
    gradient descent is difficult", as Hochreiter & Schmidhuber (1997), "Long
    short-term memory", section 5.3 (experiment 3a) run it: one input line;
    the first element is the class (+1 or −1, probability 1/2 each), the next
    ``delay`` elements are Gaussian noise of mean 0 and variance ``noise_var``
    carrying no information. The class must be told at the last step.

    Returns ``x (delay + 1, batch, 1)`` and the classes ``(batch,)`` int64 in
    {0, 1} (0: −1, 1: +1). Chance: accuracy 1/2, cross-entropy ln 2.
    """
    cls = rng.integers(0, 2, size=batch)  # (N,)
    x = rng.normal(0.0, np.sqrt(noise_var), size=(delay + 1, batch, 1))  # (L, N, 1)
    x[0, :, 0] = 2.0 * cls - 1.0
    return x.astype(dtype), cls


def sample_chars(model, vocab, seed_text, length, temperature=1.0, rng=None):
    """Generate ``length`` characters after ``seed_text`` (one step per call).

    The one-step streaming path of the layer carries the state; each next
    character is drawn from softmax(logits / temperature).
    """
    rng = np.random.default_rng(rng)
    index = {c: i for i, c in enumerate(vocab)}
    V, dtype = len(vocab), model.rnn.dtype
    eye = np.eye(V, dtype=dtype)
    state, out = None, []
    chars = [c for c in seed_text if c in index] or [vocab[0]]
    for c in chars[:-1]:
        _, state = model.rnn(eye[index[c]][None, None], state)
    c = chars[-1]
    for _ in range(length):
        h, state = model.rnn(eye[index[c]][None, None], state)  # (1, 1, H)
        logits = model.fc(h[0, 0]).astype(np.float64) / temperature
        p = np.exp(logits - logits.max())
        c = vocab[rng.choice(V, p=p / p.sum())]
        out.append(c)
    return "".join(out)
