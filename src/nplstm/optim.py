"""Optimizers and gradient clipping with torch.optim's names and update rules.

>>> opt = nplstm.optim.Adam(lstm, lr=1e-3)          # doctest: +SKIP
>>> opt.step(lstm.backward(trace, dy).params)        # doctest: +SKIP

An optimizer takes a module (its parameters, in ``named_parameters()`` order)
or a mapping ``{"lstm": lstm, "fc": fc}`` of modules, whose gradients are then
keyed ``"lstm.weight_ih_l0"``, ``"fc.weight"`` ... (a whole model's
state_dict keys). ``step(grads)`` takes gradients keyed like that and updates
the parameters in place of the module (through ``load_state_dict``'s path, so
prepared copies are rebuilt). The update rules are the ones torch.optim
documents (SGD, Adam, AdamW pages: "Algorithm" boxes) and implements in
``torch/optim/sgd.py`` and ``adam.py`` (single-tensor path); the tests hold
several steps to torch.optim within 1e-12 in float64.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .module import Module, to_numpy


def _named_modules(module):
    if isinstance(module, Module):
        return [("", module)]
    if hasattr(module, "items"):
        out = []
        for name, m in module.items():
            if not isinstance(m, Module):
                raise TypeError(f"module[{name!r}] must be an nplstm module, got "
                                f"{type(m).__name__}")
            out.append((f"{name}.", m))
        return out
    raise TypeError(f"module must be an nplstm module or a mapping of names to modules, "
                    f"got {type(module).__name__}")


def _check(name, value, low=0.0, below=None):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not value >= low or (below is not None and not value < below):  # NaN fails too
        bounds = f">= {low}" + (f" and < {below}" if below is not None else "")
        raise ValueError(f"Invalid {name} value: {value} (must be {bounds})")
    return float(value)


class Optimizer:
    """Base: parameter bookkeeping, ``state_dict``/``load_state_dict``, ``step``."""

    def __init__(self, module: Module | Mapping[str, Module], **hyper: Any) -> None:
        self._modules = _named_modules(module)
        self.param_names = [p + k for p, m in self._modules for k, _ in m.named_parameters()]
        self.hyper = hyper
        self.state: dict[int, dict[str, Any]] = {}  # param index -> {"step": float, buffers...}

    def step(self, grads: Mapping[str, Any]) -> None:
        """One update from ``grads`` (``{name: array}``, every parameter's gradient).

        Raises:
            ValueError: a parameter's gradient is missing, an unknown key is given,
                or a shape differs.
        """
        if not hasattr(grads, "keys"):
            raise TypeError(f"grads must be a mapping of parameter names to arrays, got "
                            f"{type(grads).__name__}")
        missing = [n for n in self.param_names if n not in grads]
        unknown = [n for n in grads if n not in self.param_names]
        if missing or unknown:
            raise ValueError(f"grads must have a gradient for every parameter; missing "
                             f"{missing}, unknown {unknown}")
        checked = []  # every gradient checked before any state or parameter changes
        for prefix, module in self._modules:
            for key, p in module.named_parameters():
                g = np.asarray(to_numpy(grads[prefix + key], f"grads[{prefix + key!r}]"),
                               dtype=p.dtype)
                if g.shape != p.shape:
                    raise ValueError(f"grads[{prefix + key!r}] must have shape {p.shape}, "
                                     f"got {g.shape}")
                checked.append(g)
        index = 0
        for prefix, module in self._modules:
            new = {}
            for key, p in module.named_parameters():
                state = self.state.setdefault(index, {})
                new[key] = self._update(p.copy(), checked[index], state)
                index += 1
            module.load_state_dict(new)

    def _update(self, p, g, state):
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Nothing to do: gradients are returned by ``backward``, never accumulated."""

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {...}}, "param_groups": [{hyperparameters, "params"}]}``,
        torch.optim's structure (NumPy arrays for tensors). A deep copy."""
        group = dict(self.hyper, params=list(range(len(self.param_names))))
        return {"state": copy.deepcopy(self.state), "param_groups": [group]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict` (same parameters, same optimizer kind).

        Raises:
            ValueError: wrong structure, a different number of parameters, or a
                buffer whose shape differs from its parameter's.
        """
        try:
            groups, state = state_dict["param_groups"], state_dict["state"]
        except (TypeError, KeyError):
            raise ValueError("state_dict must have 'state' and 'param_groups', as "
                             "Optimizer.state_dict() returns") from None
        if (not isinstance(groups, (list, tuple)) or len(groups) != 1
                or not hasattr(groups[0], "keys") or not hasattr(state, "items")):
            raise ValueError("state_dict must have 'param_groups' a list of one dict and "
                             "'state' a dict, as Optimizer.state_dict() returns")
        if len(groups[0].get("params", ())) != len(self.param_names):
            raise ValueError(f"state_dict is for a different set of parameters: expected one "
                             f"group of {len(self.param_names)}")
        hyper = {k: v for k, v in groups[0].items() if k != "params"}
        if set(hyper) != set(self.hyper):
            raise ValueError(f"state_dict is not for {type(self).__name__}: its "
                             f"hyperparameters are {sorted(hyper)}, {type(self).__name__}'s "
                             f"{sorted(self.hyper)}")
        modules = self._modules[0][1] if self._modules[0][0] == "" else {
            p[:-1]: m for p, m in self._modules}
        type(self)(modules, **hyper)  # the constructor's checks of every hyperparameter
        shapes = [p.shape for _, m in self._modules for _, p in m.named_parameters()]
        for i, s in state.items():
            if not (str(i).isdigit() and int(i) < len(shapes) and hasattr(s, "items")):
                raise ValueError(f"state_dict state must map parameter indices in "
                                 f"[0, {len(shapes)}) to dicts, got key {i!r}")
            for name, v in s.items():
                if name != "step" and np.shape(v) != shapes[int(i)]:
                    raise ValueError(f"state_dict state[{i}][{name!r}] has shape "
                                     f"{np.shape(v)}, its parameter {shapes[int(i)]}")
        self.hyper = {k: v for k, v in groups[0].items() if k != "params"}
        self.state = {int(i): {k: (np.array(v) if k != "step" else float(v))
                               for k, v in s.items()} for i, s in state.items()}

    def __getattr__(self, name):
        hyper = self.__dict__.get("hyper", {})
        if name in hyper:
            return hyper[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, ``torch.optim.SGD``'s rule.

    g ← g + weight_decay·p;  with momentum: b ← g (first step), else
    b ← momentum·b + (1 − dampening)·g; g ← g + momentum·b (nesterov) or b;
    p ← p − lr·g.
    """

    def __init__(self, module: Module | Mapping[str, Module], lr: float = 1e-3,
                 momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        lr, momentum = _check("learning rate", lr), _check("momentum", momentum)
        weight_decay = _check("weight_decay", weight_decay)
        dampening = _check("dampening", dampening, low=-math.inf)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {type(nesterov).__name__}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(module, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def _update(self, p, g, state):
        h = self.hyper
        if h["weight_decay"]:
            g = g + h["weight_decay"] * p
        if h["momentum"]:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = g.copy()
            else:
                buf = h["momentum"] * buf + (1 - h["dampening"]) * g
            state["momentum_buffer"] = buf
            g = g + h["momentum"] * buf if h["nesterov"] else buf
        return p - h["lr"] * g


def _lerp(start, end, weight):
    """torch.lerp's formula (two forms, by weight, for accuracy)."""
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), ``torch.optim.Adam``'s rule.

    g ← g + weight_decay·p (Adam; AdamW decays p ← p·(1 − lr·weight_decay) instead);
    m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²;  v̂ ← max(v̂, v) with amsgrad;
    p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps).
    """

    decoupled = False

    def __init__(self, module: Module | Mapping[str, Module], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        lr, eps = _check("learning rate", lr), _check("epsilon", eps)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        b1 = _check("beta parameter at index 0", betas[0], below=1.0)
        b2 = _check("beta parameter at index 1", betas[1], below=1.0)
        weight_decay = _check("weight_decay", weight_decay)
        if not isinstance(amsgrad, bool):
            raise TypeError(f"amsgrad must be a bool, got {type(amsgrad).__name__}")
        super().__init__(module, lr=lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)

    def _update(self, p, g, state):
        h = self.hyper
        lr, (b1, b2), wd = h["lr"], h["betas"], h["weight_decay"]
        if not state:
            state.update(step=0.0, exp_avg=np.zeros_like(p), exp_avg_sq=np.zeros_like(p))
            if h["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p)
        state["step"] += 1
        if self.decoupled:
            p = p * (1 - lr * wd)
        elif wd:
            g = g + wd * p
        state["exp_avg"] = m = _lerp(state["exp_avg"], g, 1 - b1)
        state["exp_avg_sq"] = v = state["exp_avg_sq"] * b2 + (1 - b2) * (g * g)
        t = state["step"]
        step_size = lr / (1 - b1 ** t)
        bias2_sqrt = (1 - b2 ** t) ** 0.5
        if h["amsgrad"]:
            state["max_exp_avg_sq"] = v = np.maximum(state["max_exp_avg_sq"], v)
        denom = np.sqrt(v) / bias2_sqrt + h["eps"]
        return p - step_size * (m / denom)


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019), ``torch.optim.AdamW``: decoupled weight decay,
    default ``weight_decay=1e-2``."""

    decoupled = True

    def __init__(self, module: Module | Mapping[str, Module], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(module, lr, betas, eps, weight_decay, amsgrad)


def clip_grad_norm_(grads: Mapping[str, np.ndarray], max_norm: float,
                    norm_type: float = 2.0) -> float:
    """Scale gradients in place so their total norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: total = ‖(‖g_1‖, ‖g_2‖, ...)‖ (the
    ``norm_type`` norm, ``inf`` for the largest magnitude), every gradient is
    multiplied by min(1, max_norm / (total + 1e-6)). ``grads``: a mapping of
    arrays (e.g. ``Grads.params``) or a list of such mappings. Returns the
    total norm before clipping (float).
    """
    dicts = grads if isinstance(grads, (list, tuple)) else [grads]
    arrays = [g for d in dicts for g in d.values()]
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not arrays:
        return 0.0
    if math.isinf(norm_type):
        norms = np.array([np.max(np.abs(g), initial=0.0) for g in arrays])
        total = float(np.max(norms))
    else:
        norms = np.array([np.sum(np.abs(g) ** norm_type) ** (1 / norm_type) for g in arrays])
        total = float(np.sum(norms ** norm_type) ** (1 / norm_type))
    coef = min(max_norm / (total + 1e-6), 1.0)
    for g in arrays:
        g *= np.asarray(coef, dtype=g.dtype)
    return total
