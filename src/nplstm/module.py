"""What every nplstm layer shares: dtype, seed, parameters and their dicts.

Parameters live in ``self._params`` (name -> read-only ndarray, PyTorch's keys
and shapes). They are read as attributes (``lstm.weight_ih_l0``) and replaced
by assignment or :meth:`Module.load_state_dict`; either way the layer drops
its prepared (transposed, fused) copies so the next call rebuilds them once.
"""

from __future__ import annotations

import warnings
from collections import namedtuple
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # for annotations only: nplstm needs NumPy alone at run time
    from typing_extensions import Self

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class InputError(ValueError, RuntimeError):
    """A call's input or state of the wrong shape, size or length, or a state_dict
    that does not fit (``load_state_dict``; PyTorch raises ``RuntimeError`` there).

    PyTorch raises ``RuntimeError`` for these in ``forward`` (and ``ValueError``
    for some, e.g. input that is not 2-D or 3-D), while constructors raise
    ``ValueError``; this class is both, so a ported ``except RuntimeError`` and
    an ``except ValueError`` catch it alike.
    """

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype: Any) -> np.dtype:
    """``np.dtype`` of float32 or float64; also takes ``torch.float32``/``torch.float64``.

    ``None`` is refused (NumPy would read it as float64; PyTorch as float32).
    """
    dt = None
    if dtype is not None:
        name = str(dtype)  # a torch dtype is read by its name: no torch import
        try:
            dt = np.dtype(name[len("torch."):] if name.startswith("torch.") else dtype)
        except TypeError:
            pass
    # `dt in _DTYPES` alone would not do: np.dtype("float64") == None is True.
    if dt is None or dt not in _DTYPES:
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}")
    return dt


def check_size(name: str, value: Any, minimum: int = 1) -> int:
    """Sizes are Python/NumPy integers (not bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """Flags are bools (NumPy's too), not ints or strings that merely look true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def to_numpy(value: Any, name: str) -> np.ndarray:
    """A NumPy view of ``value``: arrays, lists, or torch tensors (no torch import).

    bfloat16 tensors, which NumPy cannot hold, are widened to float32 first.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
        if getattr(value, "is_meta", False):
            raise ValueError(f"{name} is a tensor on the 'meta' device, which holds no data")
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like numbers, got {type(value).__name__}: "
                        f"{exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got an array of dtype {arr.dtype}")
    return arr


def article(name: str) -> str:
    """``"an LSTM"``, ``"a GRU"``, ``"an RNN"``: an acronym with its article, as read aloud.

    Its first letter is spelled out: those whose names start with a vowel sound
    (L is "el", R is "ar") take "an".
    """
    return ("an " if name[:1] in "AEFHILMNORSX" else "a ") + name


def check_gate_rows(layer, family, key, rows, hidden_size):
    """``weight_ih`` must have ``num_gates * hidden_size`` rows; else name what it is."""
    if rows == family.num_gates * hidden_size:
        return
    kinds = {4: "LSTM", 3: "GRU", 1: "RNN"}
    guess = kinds.get(rows // hidden_size) if rows % hidden_size == 0 else None
    raise ValueError(f"{key} has {rows} rows; {article(layer)} with hidden_size {hidden_size} "
                     f"needs {family.num_gates} x {hidden_size} = "
                     f"{family.num_gates * hidden_size}"
                     + (f" (these look like {article(guess)}'s weights)" if guess else ""))


def uniform_init(rng, shapes, bound, dtype):
    """PyTorch's default: every parameter ~ U(−bound, bound), drawn in key order."""
    return {k: rng.uniform(-bound, bound, size=s).astype(dtype) for k, s in shapes.items()}


def _read_only(arr):
    arr.flags.writeable = False
    return arr


class Nonlinearity:
    """The ``nonlinearity`` attribute: ``"tanh"`` or ``"relu"``, checked when set.

    ``torch.nn.RNNCell`` reads it on every call, so changing it changes the next
    result; ``torch.nn.RNN`` fixes its mode when built and silently ignores a
    later change. nplstm follows the first where it can (cells: the prepared
    weights, which depend on it, are dropped and rebuilt) and refuses the second
    (layers: a clear error rather than a setting that does nothing). Only the
    Elman RNN family has a choice: LSTM and GRU keep ``"tanh"``.
    """

    def __init__(self, changeable):
        self.changeable = changeable

    def __get__(self, obj, objtype=None):
        return self if obj is None else obj.__dict__["_nonlinearity"]

    def __set__(self, obj, value):
        if value not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {value!r}")
        if value != "tanh" and obj.family.name != "rnn":
            raise ValueError(f"nonlinearity applies to RNN and RNNCell only; "
                             f"{type(obj).__name__} is always 'tanh', got {value!r}")
        old = obj.__dict__.get("_nonlinearity", value)
        if old != value and not self.changeable:
            raise AttributeError(
                f"the nonlinearity of a built {type(obj).__name__} cannot be changed (PyTorch "
                f"would ignore the change); build {type(obj).__name__}(..., "
                f"nonlinearity={value!r}) and load_state_dict the weights into it")
        hook = getattr(obj, "_nonlinearity_set", None)  # options: keep activations in step
        if hook is not None:
            hook(value)
        obj.__dict__["_nonlinearity"] = value
        obj.__dict__["_prepared"] = None


class Module:
    """Base of every layer: parameters, dtype, train/eval, state dicts."""

    def __init__(self, *, dtype: npt.DTypeLike = np.float32,
                 seed: int | np.random.Generator | None = None) -> None:
        object.__setattr__(self, "_params", {})
        self.dtype = dtype
        self.training = True  # as torch.nn.Module: a new module is in training mode
        self._rng = np.random.default_rng(seed)  # initial weights
        # Dropout masks get their own stream, seeded from the same seed.
        self._dropout_rng = np.random.default_rng(self._rng.integers(2**63))
        self._prepared = None
        self._step_plans = None  # layers: (prepared weights, {call signature: plan})

    # ---------------------------------------------------------- parameters --

    def _param_shapes(self) -> dict:
        """``{key: shape}`` in PyTorch's registration order. Subclasses define it."""
        raise NotImplementedError

    @property
    def dtype(self) -> np.dtype:
        """The dtype of every parameter and of the computation: float32 or float64.

        Setting it converts the parameters too (as ``to(dtype)``), so the layer
        never computes in one dtype while holding or saving another.
        """
        return self.__dict__["_dtype"]

    @dtype.setter
    def dtype(self, value: npt.DTypeLike) -> None:
        dt = check_dtype(value)
        self.__dict__["_dtype"] = dt
        if any(a.dtype != dt for a in self._params.values()):
            self._params.update({k: _read_only(a.astype(dt)) for k, a in self._params.items()})
            self._prepared = None

    def _init_params(self, bound):
        values = uniform_init(self._rng, self._param_shapes(), bound, self.dtype)
        self._params.update({k: _read_only(v) for k, v in values.items()})

    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("_params", {})
        if name in params:
            return params[name]
        if name in self._optional_params:  # bias=False: None, as in PyTorch
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    #: Parameter names that read as None when the layer was built without them.
    _optional_params: tuple[str, ...] = ()

    def __getstate__(self):
        # Pickle/deepcopy: keep the parameters, rebuild the prepared copies on use.
        # The family that runs (``_run_family``) is chosen again from the options:
        # a copied Family would no longer be the one the compiled engine knows by
        # identity, and the copy would silently run on NumPy.
        state = {**self.__dict__, "_prepared": None, "_step_plans": None}
        state.pop("_run_family", None)
        return state

    def __setstate__(self, state):
        if "dtype" in state:  # pickled before dtype became a property
            state["_dtype"] = state.pop("dtype")
        self.__dict__.update(state)
        self.__dict__.setdefault("_step_plans", None)
        if "_options" in state:
            self._set_options(state["_options"])
        for arr in self._params.values():  # pickling does not keep the read-only flag
            arr.flags.writeable = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("_params", {}):
            self._set_param(name, to_numpy(value, name))
        else:
            object.__setattr__(self, name, value)

    def _set_param(self, name, arr):
        expected = self._param_shapes()[name]
        if arr.shape != tuple(expected):
            raise ValueError(f"{name}: expected shape {tuple(expected)}, got {arr.shape}")
        self._params[name] = _read_only(np.array(arr, dtype=self.dtype))
        self._prepared = None

    def named_parameters(self) -> list[tuple[str, np.ndarray]]:
        """``(name, array)`` pairs in PyTorch's order (arrays are read-only)."""
        return list(self._params.items())

    def parameters(self) -> list[np.ndarray]:
        return list(self._params.values())

    # ---------------------------------------------------------- state dicts --

    def state_dict(self, *, prefix: str = "") -> dict[str, np.ndarray]:
        """PyTorch's keys and shapes; the arrays are fresh, writable copies."""
        return {prefix + k: v.copy() for k, v in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False, *, prefix: str = "") -> IncompatibleKeys:
        """Load PyTorch's keys (NumPy arrays or torch tensors), cast to ``dtype``.

        ``prefix`` selects the keys of one submodule in a whole-model dict,
        e.g. ``prefix="lstm."`` for ``{"lstm.weight_ih_l0": ..., "fc.weight": ...}``;
        keys outside the prefix are not "unexpected". With ``strict`` every
        missing and unexpected key is an error; a wrong shape always is.
        ``assign`` as in PyTorch keeps the properties of the dict's tensors: here
        their floating dtype (float32 or float64, if they all share one), which the
        whole layer then takes; the arrays are still copied (they become read-only).
        Nothing is changed unless the whole dict is valid.
        Returns ``IncompatibleKeys(missing_keys, unexpected_keys)`` like PyTorch.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        strict, assign = check_bool("strict", strict), check_bool("assign", assign)
        given = {k[len(prefix):]: k for k in state_dict if isinstance(k, str)
                 and k.startswith(prefix)}
        shapes = self._param_shapes()
        missing = [k for k in shapes if k not in given]
        unexpected = [given[k] for k in given if k not in shapes]
        unexpected += [repr(k) for k in state_dict if not isinstance(k, str)]
        arrays, problems = {}, []
        for key in shapes:
            if key not in given:
                continue
            arr = to_numpy(state_dict[given[key]], f"state_dict[{given[key]!r}]")
            if arr.shape != tuple(shapes[key]):
                problems.append(f"  {given[key]}: expected shape {tuple(shapes[key])}, "
                                f"got {arr.shape}")
            arrays[key] = arr
        if strict and missing:
            problems.insert(0, "  missing keys: " + ", ".join(prefix + k for k in missing))
        if strict and unexpected:
            problems.insert(0, "  unexpected keys: " + ", ".join(unexpected))
        if problems:
            hint = _prefix_hint(state_dict, prefix, next(iter(shapes))) if missing else ""
            raise InputError(f"Error(s) in loading state_dict for {type(self).__name__}:\n"
                             + "\n".join(problems) + hint)
        dtype = weights_dtype(arrays.values()) if assign else None
        if dtype is not None:
            self.dtype = dtype
        for key, arr in arrays.items():
            self._params[key] = _read_only(np.array(arr, dtype=self.dtype))
        self._prepared = None
        return IncompatibleKeys([prefix + k for k in missing], unexpected)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], prefix: str = "", *,
                        strict: bool = True, dtype: npt.DTypeLike | None = None,
                        **kwargs: Any) -> Self:
        """Build a layer whose sizes fit ``state_dict`` (PyTorch's keys) and load it.

        Sizes, ``num_layers``, ``bias``, ``bidirectional``, ``proj_size`` and LSTM
        ``peepholes`` (keys ``weight_ph_l{k}``) are read off the keys and shapes;
        options that leave no trace in the weights (``batch_first``, ``dropout``,
        ``nonlinearity``, ``clip``, ``activations``, ...) are passed as ``kwargs``.
        ``strict`` as in :meth:`load_state_dict`. ``dtype``: None (default) keeps
        the weights' floating dtype -- float64 if any of them is float64, else
        float32 (float16 and bfloat16 widen to float32, which NumPy computes in).

        >>> lstm = nplstm.LSTM.from_state_dict(torch_model.state_dict(), prefix="lstm.")
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping of names to arrays, got "
                            f"{type(state_dict).__name__}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        keys = {k[len(prefix):]: state_dict[k] for k in state_dict
                if isinstance(k, str) and k.startswith(prefix)}
        if cls._first_key not in keys:
            near = ", ".join(sorted(keys)[:8]) or "none"
            raise ValueError(f"state_dict has no {prefix + cls._first_key!r} (keys under "
                             f"prefix {prefix!r}: {near})"
                             + _prefix_hint(state_dict, prefix, cls._first_key))
        config = cls._config_from_keys(keys, prefix)
        config.update(kwargs)
        if dtype is None:
            dtype = weights_dtype(to_numpy(v, prefix + k) for k, v in keys.items()) \
                or np.float32
        module = cls(**config, dtype=dtype)
        module.load_state_dict(state_dict, strict, prefix=prefix)
        return module

    #: The key every state_dict of this class has (its prefix is searched for it).
    _first_key = "weight_ih_l0"

    @classmethod
    def _config_from_keys(cls, keys, prefix):
        raise NotImplementedError

    @staticmethod
    def _shape(keys, name, prefix, ndim):
        if name not in keys:
            near = ", ".join(sorted(keys)[:8]) or "none"
            raise ValueError(f"state_dict has no {prefix + name!r} (keys under prefix "
                             f"{prefix!r}: {near})")
        shape = to_numpy(keys[name], prefix + name).shape
        if len(shape) != ndim:
            raise ValueError(f"{prefix + name} must be {ndim}-D, got shape {shape}")
        return shape

    # ----------------------------------------------------------------- modes --

    def train(self, mode: bool = True) -> Self:
        """Training mode, the default as in PyTorch: dropout between layers acts
        (when ``dropout > 0`` and ``num_layers > 1``). Returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode must be a bool, got {type(mode).__name__}")
        self.training = mode
        return self

    def eval(self) -> Self:
        """Evaluation mode: dropout off (what inference wants). Returns self."""
        return self.train(False)

    # ------------------------------------------------ torch.nn.Module's habits --

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The same as calling the module, as in PyTorch."""
        module: Any = self  # every subclass defines __call__
        return module(*args, **kwargs)

    def to(self, *args: Any, dtype: npt.DTypeLike | None = None, device: Any = None,
           non_blocking: bool = False) -> Self:
        """``to(dtype)``, ``to("cpu")``, ``to(device, dtype)``, ``to(tensor)``: in place,
        returns self, as ``torch.nn.Module.to``. dtype: float32 or float64 (NumPy or
        torch dtypes); device: the CPU only (NumPy has no other). ``non_blocking``
        is accepted and means nothing here.
        """
        for arg in args:
            if _is_device(arg):
                device = arg
            else:
                # an array's or tensor's dtype (np.float32 itself has a .dtype too)
                dtype = arg if isinstance(arg, type) else getattr(arg, "dtype", arg)
        if device is not None and str(device).split(":")[0] != "cpu":
            raise NotImplementedError(f"nplstm runs on the CPU (NumPy); to(device="
                                      f"{str(device)!r}) is not supported")
        if dtype is not None:
            self.dtype = dtype
        return self

    def float(self) -> Self:
        """Parameters and computation in float32. Returns self."""
        return self.to(np.float32)

    def double(self) -> Self:
        """Parameters and computation in float64. Returns self."""
        return self.to(np.float64)

    def cpu(self) -> Self:
        """Nothing to move: NumPy arrays live on the CPU. Returns self."""
        return self

    def children(self) -> Iterator[Module]:
        """Immediate submodules: none (a layer's parameters are its own)."""
        return iter(())

    def modules(self) -> Iterator[Module]:
        """This module, then its submodules' modules, as in PyTorch."""
        yield self
        for child in self.children():
            yield from child.modules()


def _is_device(arg):
    """A device argument of ``to``: ``"cpu"``, ``"cuda:0"``, ``torch.device(...)``."""
    if type(arg).__name__ == "device":
        return True
    return isinstance(arg, str) and arg.split(":")[0] in (
        "cpu", "cuda", "mps", "meta", "xpu", "xla", "hip", "ipu", "mtia", "hpu")


def weights_dtype(values: Iterable[Any]) -> np.dtype | None:
    """The floating dtype a set of weights keeps: float64 if any is, else float32
    (float16 and bfloat16 widen to it); None when none is floating."""
    names = {str(getattr(v, "dtype", "")).replace("torch.", "") for v in values}
    if "float64" in names:
        return np.dtype(np.float64)
    if names & {"float32", "float16", "bfloat16"}:
        return np.dtype(np.float32)
    return None


def _prefix_hint(state_dict, prefix, key):
    """A hint naming the prefix(es) under which ``key`` sits, e.g. ``module.lstm.``."""
    found = sorted({k[: -len(key)] for k in state_dict
                    if isinstance(k, str) and k.endswith(key) and k != prefix + key})
    if found:
        return f"\n  (the dict has {key} under prefix {found!r}; pass prefix=...)"
    return ""


def warn_dropout(dropout, num_layers):
    """PyTorch's warning for dropout that cannot act (it sits between layers)."""
    if dropout > 0 and num_layers == 1:
        warnings.warn("dropout option adds dropout after all but last recurrent layer, "
                      "so non-zero dropout expects num_layers greater than 1, but got "
                      f"dropout={dropout} and num_layers={num_layers}", UserWarning,
                      stacklevel=3)
