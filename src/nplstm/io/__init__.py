"""Weight files without the framework: torch ``.pt``, ``.safetensors`` and ``.npz``.

>>> import nplstm
>>> sd = nplstm.load_weights("model.pt")                  # doctest: +SKIP
>>> lstm.load_state_dict(sd, prefix="lstm.")              # doctest: +SKIP
>>> nplstm.save_weights(lstm.state_dict(), "lstm.safetensors")  # doctest: +SKIP

Nothing here imports torch, and no file can run code: ``.pt`` pickles run in
nplstm's own bounded interpreter (:mod:`nplstm.io.pickle_vm`), which builds plain data
and calls nothing outside an allowlist (:mod:`nplstm.io.torch_pickle`); ``.npz`` object
arrays are refused. Files are recognised by their content (:mod:`nplstm.io.detect`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from .._atomic import atomic_write
from . import npz, safetensors, torch_legacy, torch_pt
from ._common import SAVABLE_DTYPES, UnsafeWeightsError, WeightsFormatError
from .checkpoint import find_state_dict
from .detect import TORCH_SUFFIXES, detect

__all__ = [
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "UnsafeWeightsError",
    "WeightsFormatError",
    "find_state_dict",
    "load_checkpoint",
    "load_weights",
    "save_weights",
]

# The usual names; any name works, as files are recognised by their content.
READ_SUFFIXES = TORCH_SUFFIXES + (".safetensors", ".npz")
_READERS = {
    "torch-zip": torch_pt.read_pt,
    "torch-legacy": torch_legacy.read_legacy,
    "safetensors": safetensors.read_safetensors,
    "npz": npz.read_npz,
}
WRITE_SUFFIXES = (".safetensors", ".npz")


def load_weights(path, key: str | int | None = None) -> dict[str, np.ndarray]:
    """Read a state_dict from ``path`` without torch: ``{"weight_ih_l0": array, ...}``.

    Args:
        path: a ``torch.save`` file (zip format of PyTorch >= 1.6, or the legacy
            format before it), a safetensors or an ``.npz`` file, recognised by its
            content whatever its name (``model_best.pth.tar``, ``checkpoint``).
        key: for a checkpoint holding a state_dict among other things (``{"epoch": 3,
            "model": state_dict, "optimizer": ...}``), the ``/``-separated path to it,
            e.g. ``"model"``; an int, or digits in the path (``"optimizer/state/0"``),
            reach integer keys such as optimizer state's. ``None`` finds it: the file itself if it is a dict of
            tensors, else the only dict of tensors inside (preferring ``state_dict``,
            ``model_state_dict``, ``model``, ... when there are several).

    Returns:
        A new dict of C-contiguous arrays in native byte order, in file order. Dtypes
        are kept, except bfloat16, which NumPy lacks: it is widened to float32 (exact).

    Raises:
        WeightsFormatError: not a weight file (the message says what its first bytes
            look like), a malformed or truncated one, one beyond the reader's bounds
            (nesting, sizes, copies: :mod:`nplstm.io.pickle_vm`), a tensor of a dtype
            NumPy lacks (float8, quantized, ...: the message names its key), or no
            state_dict in it (the message lists the top-level keys); a ValueError
            subclass.
        UnsafeWeightsError: a ``.pt`` pickle names a global outside the allowlist
            (``os.system``, a model class, ...); nothing from the file ran.
        OSError: the file cannot be opened.
    """
    path = _path(path)
    return find_state_dict(load_checkpoint(path), key, source=path)[1]


def load_checkpoint(path):
    """Everything a weight file holds, tensors as arrays (e.g. a whole checkpoint dict).

    For safetensors and ``.npz`` this is the dict of arrays; for ``torch.save`` files it
    is the saved object as plain Python values: dict (also for ``OrderedDict``), list,
    tuple (also for ``torch.Size``), set, frozenset, str, bytes (also for
    ``bytearray``), int, float, complex, bool, None, arrays for tensors, and names for
    torch devices, dtypes and layouts (``'cuda:0'``, ``'torch.float16'``,
    ``'torch.strided'``). Pass it to :func:`find_state_dict` to locate the state_dict.

    Raises: as :func:`load_weights`, except for the state_dict search.
    """
    path = _path(path)
    return _READERS[detect(path)](path)


def save_weights(state_dict: Mapping, path) -> None:
    """Write ``state_dict`` to ``.safetensors`` or ``.npz``, atomically.

    Args:
        state_dict: ``str`` -> NumPy array or torch tensor (converted with
            ``.detach().cpu().numpy()``; torch itself is never imported). Dtypes: bool,
            int8..int64, uint8..uint64, float16, float32, float64. A bfloat16 tensor is
            widened to float32, as NumPy has no bfloat16.
        path: ends in ``.safetensors`` or ``.npz`` (uncompressed).

    The file is written to an unnamed temporary file beside ``path`` (a named one
    where the OS lacks ``O_TMPFILE``), fsynced and renamed over ``path``: if anything
    fails or the process is interrupted (SIGTERM acts as Ctrl-C), an existing ``path``
    is left as it was and no temporary file remains (see :mod:`nplstm._atomic`).

    Raises:
        TypeError: ``state_dict`` is not a mapping, a key is not a string, or a value
            is not an array.
        ValueError: unsupported suffix or dtype, or a tensor on the 'meta' device
            (naming the key).
        OSError: ``path`` cannot be written (the message names ``path``).
    """
    path = _path(path)
    suffix = _suffix(path, WRITE_SUFFIXES, "write")
    arrays = _as_arrays(state_dict)
    writer = safetensors.write_safetensors if suffix == ".safetensors" else npz.write_npz
    with atomic_write(path) as f:
        writer(f, arrays)


def _path(path) -> str:
    """``path`` (str, bytes or os.PathLike) as a str, so messages and suffixes read well."""
    return os.fsdecode(os.fspath(path))


def _suffix(path: str, allowed: tuple[str, ...], verb: str) -> str:
    """The lower-cased suffix of ``path``, which must be one of ``allowed``."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in allowed:
        hint = " (write .pt files with torch.save)" if suffix in TORCH_SUFFIXES else ""
        raise ValueError(
            f"{path}: cannot {verb} {suffix or 'files without a suffix'}{hint}; "
            f"supported: {', '.join(allowed)}"
        )
    return suffix


def _as_arrays(state_dict) -> dict[str, np.ndarray]:
    """Check every key and value of a state_dict; return ``str -> ndarray``."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of str to arrays, got "
                        f"{type(state_dict).__name__}")
    arrays = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"state_dict keys must be non-empty strings, got {key!r}")
        arrays[key] = _as_array(key, value)
    return arrays


def _as_array(key: str, value) -> np.ndarray:
    """A NumPy array from an array or a torch tensor (duck-typed), with a savable dtype."""
    if all(hasattr(value, name) for name in ("detach", "cpu", "numpy")):
        if getattr(value, "is_meta", False) or str(getattr(value, "device", "")) == "meta":
            raise ValueError(f"state_dict[{key!r}]: tensor on the 'meta' device has no "
                             "data to save; materialise it first (e.g. load_state_dict "
                             "with assign=True, or .to_empty() and initialise)")
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()  # NumPy has no bfloat16; float32 holds it exactly
        value = value.detach().cpu().numpy()
    if not isinstance(value, (np.ndarray, np.generic)):
        raise TypeError(f"state_dict[{key!r}]: expected a numpy array or torch tensor, "
                        f"got {type(value).__name__}")
    array = np.asarray(value)
    if array.dtype.newbyteorder("=") not in SAVABLE_DTYPES:
        raise ValueError(
            f"state_dict[{key!r}]: dtype {array.dtype} cannot be saved; supported: "
            f"{', '.join(str(d) for d in SAVABLE_DTYPES)}"
        )
    return array
