"""The layer options beyond PyTorch's, checked once and held as data.

ONNX's LSTM/GRU/RNN operators (opset 14, "Operators.md": LSTM, GRU, RNN) and
Keras's layers have options PyTorch lacks: LSTM peepholes, a cell clip, a
coupled input-forget gate, per-role activation functions with alpha/beta, and
the GRU whose reset gate applies before the recurrent product. The layers and
cells take them as keyword arguments; this module checks them (errors name the
argument, what was expected and what came) and resolves each direction's
activation functions with their parameters. The math is in :mod:`nplstm.gates`
(teaching) and :mod:`nplstm.cells` (the general step).

Activation roles, ONNX's order: LSTM ``(f, g, h)`` (f: gates i, f, o; g: the
cell candidate; h: the cell output, ``h = o ⊙ h(c)``), GRU ``(f, g)`` (f: r, z;
g: n), RNN ``(f,)``. ``activations`` lists one name per role for all
directions, or (bidirectional) the forward roles then the reverse roles, as in
ONNX. ``activation_alpha``/``activation_beta`` are ALIGNED with
``activations`` (one entry per function, None = the function's default), unlike
ONNX's lists, which only the functions taking a value consume in order.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

#: The ONNX spelling of every activation function the recurrent operators allow.
ACTIVATION_NAMES = ("Sigmoid", "Tanh", "Relu", "HardSigmoid", "Affine", "LeakyRelu",
                    "ThresholdedRelu", "ScaledTanh", "Elu", "Softsign", "Softplus")
_CANONICAL = {name.lower(): name for name in ACTIVATION_NAMES}

#: Default (alpha, beta) of the functions that take them; None: takes no such value.
#: HardSigmoid, LeakyRelu, ThresholdedRelu, Elu: the ONNX operators of those names
#: (Operators.md); Affine (1, 0) and ScaledTanh (1, 1): the identity-like defaults
#: of their former ONNX / onnxruntime contrib operators. Note: onnxruntime's
#: recurrent kernels default a missing ThresholdedRelu alpha, and Affine/ScaledTanh
#: alpha and beta, to 0 (rnn_helpers.cc): an importer passes explicit values.
PARAMETER_DEFAULTS = {
    "HardSigmoid": (0.2, 0.5), "Affine": (1.0, 0.0), "LeakyRelu": (0.01, None),
    "ThresholdedRelu": (1.0, None), "ScaledTanh": (1.0, 1.0), "Elu": (1.0, None),
}

ROLES = {"lstm": ("f", "g", "h"), "gru": ("f", "g"), "rnn": ("f",)}
DEFAULT_ACTIVATIONS = {"lstm": ("Sigmoid", "Tanh", "Tanh"), "gru": ("Sigmoid", "Tanh"),
                       "rnn": ("Tanh",)}


@dataclass(frozen=True)
class Activation:
    """One resolved activation: canonical ONNX name and its alpha, beta (or None)."""

    name: str
    alpha: float | None = None
    beta: float | None = None


@dataclass(frozen=True)
class Options:
    """A layer's (or cell's) checked options; ``default`` means PyTorch's math.

    ``activations``: canonical names, as given (or the default) -- the public
    attribute; ``alpha``/``beta``: aligned tuples or None; ``clip``: float or None.
    """

    family: str
    activations: tuple
    alpha: tuple | None = None
    beta: tuple | None = None
    clip: float | None = None
    peepholes: bool = False
    input_forget: bool = False
    linear_before_reset: bool = True

    @property
    def default(self):
        """True when PyTorch's own math runs (the fast path can take it)."""
        plain = {"lstm": ("Sigmoid", "Tanh", "Tanh"), "gru": ("Sigmoid", "Tanh")}
        acts = self.activations
        if self.family == "rnn":
            same = acts in (("Tanh",) * len(acts), ("Relu",) * len(acts))
        else:
            roles = plain[self.family]
            same = acts in (roles, roles * 2)
        return (same and self.clip is None and not self.peepholes and not self.input_forget
                and self.linear_before_reset)

    def direction(self, d):
        """The resolved :class:`Activation` of each role for direction ``d`` (0, 1)."""
        n = len(ROLES[self.family])
        start = n * d if len(self.activations) == 2 * n else 0
        out = []
        for k in range(start, start + n):
            name = self.activations[k]
            alpha_d, beta_d = PARAMETER_DEFAULTS.get(name, (None, None))
            alpha = None if self.alpha is None else self.alpha[k]
            beta = None if self.beta is None else self.beta[k]
            out.append(Activation(name, alpha_d if alpha is None else alpha,
                                  beta_d if beta is None else beta))
        return tuple(out)


def _unordered(values):
    """Strings, sets, mappings and iterators: not an ordered sequence of entries."""
    return (isinstance(values, (str, bytes, AbstractSet, Mapping)) or not hasattr(values, "__len__")
            or not hasattr(values, "__getitem__"))


def canonical_activations(family, activations, num_directions, layer):
    """The names checked and spelled as ONNX does; None gives the family's default."""
    if activations is None:
        return DEFAULT_ACTIVATIONS[family]
    roles = ROLES[family]
    if _unordered(activations):
        raise TypeError(f"{layer}: activations must be a sequence of names (one per role "
                        f"{roles}), got {type(activations).__name__} {activations!r}")
    n, allowed = len(roles), (len(roles),)
    if num_directions == 2:
        allowed = (n, 2 * n)
    if len(activations) not in allowed:
        want = " or ".join(str(a) for a in allowed)
        raise ValueError(f"{layer}: activations must have {want} entries (roles {roles}"
                         + (", forward then reverse" if num_directions == 2 else "")
                         + f"), got {len(activations)}: {tuple(activations)!r}")
    out = []
    for name in activations:
        canon = _CANONICAL.get(name.lower()) if isinstance(name, str) else None
        if canon is None:
            raise ValueError(f"{layer}: unknown activation {name!r}; expected one of "
                             f"{', '.join(ACTIVATION_NAMES)} (case-insensitive)")
        out.append(canon)
    return tuple(out)


def _parameters(kind, values, activations, layer):
    """``activation_alpha`` or ``_beta``: None, or floats/None aligned with activations."""
    if values is None:
        return None
    if _unordered(values):
        raise TypeError(f"{layer}: activation_{kind} must be a sequence aligned with "
                        f"activations, got {type(values).__name__} {values!r}")
    if len(values) != len(activations):
        raise ValueError(f"{layer}: activation_{kind} must have one entry per activation "
                         f"({len(activations)}: {activations!r}), got {len(values)}")
    index = 0 if kind == "alpha" else 1
    out = []
    for name, v in zip(activations, values):
        if v is None:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{layer}: activation_{kind} entries must be numbers or None, "
                            f"got {type(v).__name__} {v!r} (for {name})")
        if not math.isfinite(v):
            raise ValueError(f"{layer}: activation_{kind} entries must be finite, got {v!r} "
                             f"(for {name})")
        if PARAMETER_DEFAULTS.get(name, (None, None))[index] is None:
            takes = [n for n, p in PARAMETER_DEFAULTS.items() if p[index] is not None]
            raise ValueError(f"{layer}: {name} takes no {kind}, got activation_{kind} "
                             f"{float(v)!r} for it (only {', '.join(takes)} take one)")
        out.append(float(v))
    return tuple(out)


def check_clip(clip, layer):
    """None, or a finite number > 0 (ONNX: "cell clip threshold")."""
    if clip is None:
        return None
    if isinstance(clip, bool) or not isinstance(clip, numbers.Real):
        raise TypeError(f"{layer}: clip must be None or a number > 0, got "
                        f"{type(clip).__name__} {clip!r}")
    if not clip > 0 or clip == float("inf"):
        raise ValueError(f"{layer}: clip must be a finite number > 0, got {clip!r}")
    return float(clip)


def make_options(family, layer, num_directions, *, activations=None, activation_alpha=None,
                 activation_beta=None, clip=None, peepholes=False, input_forget=False,
                 linear_before_reset=True, nonlinearity="tanh"):
    """Check every option and return :class:`Options`. ``layer`` names the caller in
    errors. For the RNN, ``nonlinearity="relu"`` means ``activations=("Relu",)``;
    both given and disagreeing is a ValueError."""
    for name, flag in (("peepholes", peepholes), ("input_forget", input_forget),
                       ("linear_before_reset", linear_before_reset)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{layer}: {name} must be a bool, got {type(flag).__name__} "
                            f"{flag!r}")
    relu = family == "rnn" and nonlinearity == "relu"
    if relu and activations is None:
        activations = ("Relu",)
    acts = canonical_activations(family, activations, num_directions, layer)
    if relu and set(acts) != {"Relu"}:
        raise ValueError(f"{layer}: nonlinearity='relu' disagrees with activations="
                         f"{acts!r}; give one of them")
    return Options(family, acts, _parameters("alpha", activation_alpha, acts, layer),
                   _parameters("beta", activation_beta, acts, layer), check_clip(clip, layer),
                   bool(peepholes), bool(input_forget), bool(linear_before_reset))


def option_kwargs(opts, nonlinearity="tanh"):
    """``{keyword: value}`` of every non-default option, as the layer was built with
    them (``{}`` for PyTorch's math); the repr and :class:`nplstm.Trace` show these."""
    out = {}
    if opts.peepholes:
        out["peepholes"] = True
    if opts.clip is not None:
        out["clip"] = opts.clip
    if opts.input_forget:
        out["input_forget"] = True
    if not opts.linear_before_reset:
        out["linear_before_reset"] = False
    plain = DEFAULT_ACTIVATIONS[opts.family]
    if opts.family == "rnn" and nonlinearity == "relu":
        plain = ("Relu",)
    if opts.activations not in (plain, plain * 2):
        out["activations"] = opts.activations
    if opts.alpha is not None and any(a is not None for a in opts.alpha):
        out["activation_alpha"] = opts.alpha
    if opts.beta is not None and any(b is not None for b in opts.beta):
        out["activation_beta"] = opts.beta
    return out


def repr_options(opts, nonlinearity="tanh"):
    """``", name=value"`` for every non-default option, as the repr shows them."""
    return "".join(f", {k}={v!r}" for k, v in option_kwargs(opts, nonlinearity).items())


def activation_range(act):
    """``(lo, hi)``: the values a resolved :class:`Activation` can take (±inf where
    unbounded), from its equation in :mod:`nplstm.gates`."""
    a = act.alpha
    ranges = {"Sigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0), "HardSigmoid": (0.0, 1.0),
              "Softsign": (-1.0, 1.0), "Relu": (0.0, math.inf), "Softplus": (0.0, math.inf)}
    if act.name in ranges:
        return ranges[act.name]
    if act.name == "ScaledTanh":  # alpha·tanh(beta·x)
        return (-abs(a), abs(a))
    if act.name == "ThresholdedRelu":  # x if x >= alpha else 0
        return (min(a, 0.0), math.inf)
    if act.name == "Elu":  # x if x >= 0 else alpha·(e^x − 1)
        return (min(-a, 0.0), math.inf)
    return (-math.inf, math.inf)  # Affine, LeakyRelu


def gate_range(opts, gate, direction=0):
    """``(lo, hi)`` of a recorded gate (LSTM i, f, g, o; GRU r, z, n; RNN h) in
    ``direction``: its role's activation range; with ``input_forget`` f = 1 − i."""
    acts = opts.direction(direction)
    role = 1 if gate in ("g", "n") else 0
    lo, hi = activation_range(acts[role])
    if gate == "f" and opts.input_forget:
        return (1.0 - hi, 1.0 - lo)
    return (lo, hi)


def peephole_config(cls, keys, key):
    """``{"peepholes": True}`` when a state dict has ``key`` (``weight_ph_l0`` or
    ``weight_ph``) -- an LSTM's peepholes; ``{}`` otherwise."""
    if key.rsplit(".", 1)[-1] not in keys:
        return {}
    if cls.family.name != "lstm":
        raise ValueError(f"{key} holds LSTM peepholes; these weights are not for "
                         f"{cls.__name__}")
    return {"peepholes": True}


class OptionsMixin:
    """What layers and cells share about their options: read-only attributes,
    the engine, the family that runs (fast or general), and the RNN rule that
    ``nonlinearity`` and ``activations`` say the same thing."""

    _options: Options
    family: Any  # nplstm.cells.Family, set by each layer and cell class

    @property
    def engine(self) -> str:
        """The path a forward pass takes now: ``"numba"`` (the compiled kernels of
        the ``[fast]`` extra, for default options: numba installed and
        ``NPLSTM_ENGINE`` not ``numpy``), ``"numpy"`` (the fast path of
        :mod:`nplstm.cells`) or ``"numpy-general"`` (the general step of
        :mod:`nplstm.general`, taken by non-default options, which the compiled
        kernels do not take). Traces take the same path as calls."""
        if not self._options.default:
            return "numpy-general"
        from . import _numba

        return _numba.engine()

    def _set_options(self, opts):
        """Hold ``opts`` and the family that runs them, chosen once here (the
        one-step hot path reads ``_run_family`` and nothing else)."""
        from . import general

        self.__dict__["_options"] = opts
        self.__dict__["_run_family"] = (self.family if opts.default
                                        else general.FAMILIES[self.family.name])
        self.__dict__["_prepared"] = None

    @property
    def activations(self) -> tuple[str, ...]:
        """Canonical ONNX names, one per role (``2 ×`` roles if given per direction)."""
        return self._options.activations

    @property
    def activation_alpha(self) -> tuple[float | None, ...] | None:
        return self._options.alpha

    @property
    def activation_beta(self) -> tuple[float | None, ...] | None:
        return self._options.beta

    @property
    def clip(self) -> float | None:
        return self._options.clip

    def _nonlinearity_set(self, value):
        """Called by the ``nonlinearity`` descriptor: keep the activations in step
        (a cell's nonlinearity may change; a disagreement is a ValueError)."""
        opts = self.__dict__.get("_options")
        if opts is None or opts.family != "rnn":
            return
        want = "Relu" if value == "relu" else "Tanh"
        acts = opts.activations
        if set(acts) in ({"Relu"}, {"Tanh"}):  # they take no alpha/beta: entries all None
            self._set_options(replace(opts, activations=(want,) * len(acts)))
        elif value == "relu":
            raise ValueError(f"{type(self).__name__}: nonlinearity='relu' disagrees with "
                             f"activations={acts!r}")


class LSTMOptionsMixin(OptionsMixin):
    @property
    def peepholes(self) -> bool:
        return self._options.peepholes

    @property
    def input_forget(self) -> bool:
        return self._options.input_forget


class GRUOptionsMixin(OptionsMixin):
    @property
    def linear_before_reset(self) -> bool:
        return self._options.linear_before_reset
