"""A restricted unpickler for ``torch.save`` pickles, rebuilding tensors as NumPy arrays.

A ``torch.save`` pickle names a few torch functions (``_rebuild_tensor_v2`` ...) and
storage types, and points at raw bytes through persistent ids. This module maps each
allowed name to a small NumPy function of its own; torch is never imported. Any other
global (``os.system``, ``builtins.eval``, a model class) raises UnsafeWeightsError
before it is looked up, so no code from the file ever runs.

Three doors let a pickle reach a global: GLOBAL/STACK_GLOBAL/INST/OBJ go through
``find_class``; persistent ids go through ``persistent_load``; EXT1/EXT2/EXT4 (copyreg
extension codes) go through ``find_class`` only the first time a process sees a
code -- afterwards CPython answers them from ``copyreg._extension_cache`` without
asking. So EXT opcodes are refused by scanning the pickle before it is loaded.
"""

from __future__ import annotations

import _compat_pickle  # the stdlib's Python 2 -> 3 name table
import collections
import dataclasses
import io
import pickle
import pickletools
from typing import Callable

import numpy as np

from ._common import UnsafeWeightsError, WeightsFormatError, is_int
from .torch_tensor import (
    DTYPES,
    STORAGES,
    CopyBudget,
    Storage,
    StorageType,
    TorchDtype,
    UnsupportedDtype,
    UnsupportedTensor,
    rebuild_tensor,
    unsupported_dtype_name,
)

_EXT_OPCODES = {"EXT1", "EXT2", "EXT4"}

# Quantization schemes, arguments of _rebuild_qtensor: loaded as inert names.
_QSCHEMES = ("per_tensor_affine", "per_channel_affine", "per_tensor_symmetric",
             "per_channel_symmetric", "per_channel_affine_float_qparams")

# Searching the loaded object for unsupported tensors visits at most this many nodes.
_MAX_WALK = 10_000_000


def _check_flag(requires_grad, backward_hooks) -> None:
    """The two tensor flags every rebuild function receives; their values are unused."""
    if not isinstance(requires_grad, bool):
        raise WeightsFormatError(f"tensor: requires_grad must be a bool, got {requires_grad!r}")
    if not isinstance(backward_hooks, dict):
        raise WeightsFormatError(
            f"tensor: backward_hooks must be a dict, got {type(backward_hooks).__name__}"
        )


class TorchUnpickler(pickle.Unpickler):
    """Unpickle ``data.pkl`` with only the globals a state_dict needs.

    ``read_storage(key, nbytes)`` returns the bytes of ``data/<key>`` as a uint8 array,
    checked to be ``nbytes`` long.
    """

    def __init__(self, data: bytes, read_storage: Callable, byteorder: str, source: str):
        super().__init__(io.BytesIO(data))
        self._read_storage = read_storage
        self._byteorder = byteorder
        self._source = source
        self._storages: dict[str, Storage] = {}
        self._reused: set[str] = set()  # storages already handed out as an array
        self.budget = CopyBudget()
        self.unsupported: list[str] = []  # dtypes of UnsupportedTensor placeholders made
        self._allowed = self._allowlist()

    def _allowlist(self) -> dict[tuple[str, str], object]:
        """(module, name) -> the object standing in for that global."""
        allowed = {
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_tensor_v3"): self._rebuild_tensor_v3,
            ("torch._utils", "_rebuild_parameter"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): self._rebuild_parameter,
            ("torch._utils", "_rebuild_qtensor"): self._rebuild_qtensor,
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch", "device"): _device,
            ("_codecs", "encode"): _encode_bytes,
        }
        for builtins in ("builtins", "__builtin__"):
            allowed[builtins, "set"] = set
            allowed[builtins, "frozenset"] = frozenset
        for name in DTYPES:
            allowed["torch", name] = TorchDtype(name)
        for name, dtype in STORAGES.items():
            for module in ("torch", "torch.storage", "torch.cuda"):
                allowed[module, name] = StorageType(TorchDtype(dtype))
        for name in _QSCHEMES:
            allowed["torch", name] = _QScheme(name)
        return allowed

    def find_class(self, module: str, name: str):
        """Map an allowed global to its stand-in; refuse every other one."""
        try:
            return self._allowed[module, name]
        except (KeyError, TypeError):
            pass
        unsupported = unsupported_dtype_name(module, name)
        if unsupported is not None:  # an inert name: tensors of it become placeholders
            dtype = UnsupportedDtype(unsupported)
            return StorageType(dtype) if name.endswith("Storage") else dtype
        raise UnsafeWeightsError(
            f"{self._source}: refusing to load global {_global_name(module, name)}: the "
            "pickle may run code, and nplstm only rebuilds tensors and plain containers. If you "
            "trust the file, load it with torch and save just the weights: "
            "torch.save(model.state_dict(), 'weights.pt')"
        )

    def persistent_load(self, pid) -> Storage | UnsupportedDtype:
        """Resolve ``('storage', StorageType, key, location, numel)`` to its bytes."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise WeightsFormatError(f"{self._source}: unsupported persistent id {pid!r}")
        _, storage_type, key, location, count = pid
        if not isinstance(storage_type, StorageType) or not isinstance(key, str):
            raise WeightsFormatError(f"{self._source}: malformed storage id {pid!r}")
        if not isinstance(location, str) or not is_int(count) or count < 0:
            raise WeightsFormatError(f"{self._source}: malformed storage id {pid!r}")
        if isinstance(storage_type.dtype, UnsupportedDtype):
            return storage_type.dtype  # not read: its tensors become placeholders
        if key not in self._storages:
            itemsize = storage_type.dtype.numpy("<").itemsize
            data = self._read_storage(key, count * itemsize)  # (nbytes,) uint8
            self.budget.add_storage(data.size)
            self._storages[key] = Storage(key, storage_type.dtype, location, data)
        return self._storages[key]

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad,
                           backward_hooks, metadata=None) -> np.ndarray | UnsupportedTensor:
        """Stand-in for ``torch._utils._rebuild_tensor_v2``: the storage's own dtype."""
        _check_flag(requires_grad, backward_hooks)
        if isinstance(storage, UnsupportedDtype):  # a legacy typed storage, e.g. QInt8
            return self._placeholder(storage.name)
        if not isinstance(storage, Storage):
            raise WeightsFormatError(f"tensor: expected a storage, got {type(storage).__name__}")
        return self._tensor(storage, storage_offset, size, stride, storage.dtype)

    def _rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad,
                           backward_hooks, dtype,
                           metadata=None) -> np.ndarray | UnsupportedTensor:
        """Stand-in for ``torch._utils._rebuild_tensor_v3``: untyped bytes and a dtype."""
        _check_flag(requires_grad, backward_hooks)
        if isinstance(dtype, UnsupportedDtype):
            return self._placeholder(dtype.name)
        if not isinstance(dtype, TorchDtype):
            raise WeightsFormatError(f"tensor: expected a torch dtype, got {dtype!r}")
        return self._tensor(storage, storage_offset, size, stride, dtype)

    def _rebuild_qtensor(self, storage, storage_offset, size, stride, quantizer_params,
                         requires_grad, backward_hooks) -> UnsupportedTensor:
        """Stand-in for ``torch._utils._rebuild_qtensor``: a placeholder, never read."""
        _check_flag(requires_grad, backward_hooks)
        name = storage.name if isinstance(storage, UnsupportedDtype) else "quantized"
        return self._placeholder(name)

    def _placeholder(self, dtype_name: str) -> UnsupportedTensor:
        """A tensor nplstm cannot represent; :func:`unpickle` reports where it sits."""
        self.unsupported.append(dtype_name)
        return UnsupportedTensor(dtype_name)

    def _tensor(self, storage, storage_offset, size, stride, dtype) -> np.ndarray:
        """Rebuild one tensor; the first to cover a whole storage may keep its buffer."""
        reuse = isinstance(storage, Storage) and storage.key not in self._reused
        array = rebuild_tensor(storage, storage_offset, size, stride, dtype,
                               self._byteorder, self.budget, reuse)
        if reuse and np.may_share_memory(array, storage.data):
            self._reused.add(storage.key)
        return array

    @staticmethod
    def _rebuild_parameter(data, requires_grad, backward_hooks,
                           state=None) -> np.ndarray | UnsupportedTensor:
        """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the array."""
        _check_flag(requires_grad, backward_hooks)
        if isinstance(data, UnsupportedTensor):
            return data
        if not isinstance(data, np.ndarray):
            raise WeightsFormatError(f"parameter: expected a tensor, got {type(data).__name__}")
        return data


def _global_name(module: str, name: str) -> str:
    """``'module.name'``, plus its Python 3 name for a protocol-2 alias (``__builtin__``)."""
    text = f"'{module}.{name}'"
    module3, name3 = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module3 = _compat_pickle.IMPORT_MAPPING.get(module3, module3)
    return text if (module3, name3) == (module, name) else f"{text} ({module3}.{name3})"


@dataclasses.dataclass(frozen=True)
class _QScheme:
    """Stands in for ``torch.per_tensor_affine`` and friends; not callable."""

    __slots__ = ("name",)

    name: str


def _device(kind, index=None) -> str:
    """Stand-in for ``torch.device``: its string, e.g. ``'cuda:0'``."""
    if not isinstance(kind, str) or not (index is None or is_int(index)):
        raise WeightsFormatError(f"torch.device: bad arguments {kind!r}, {index!r}")
    return kind if index is None else f"{kind}:{index}"


def _encode_bytes(text, encoding="utf-8") -> bytes:
    """Stand-in for ``_codecs.encode``, which protocol-2 pickles use for ``bytes``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise WeightsFormatError(f"_codecs.encode: only (str, 'latin1') is allowed, "
                                 f"got {type(text).__name__}, {encoding!r}")
    return text.encode("latin1")


def refuse_extension_codes(data: bytes, source: str) -> None:
    """Raise UnsafeWeightsError on EXT opcodes, WeightsFormatError on a broken pickle."""
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in _EXT_OPCODES:
                raise UnsafeWeightsError(
                    f"{source}: refusing copyreg extension code {arg} ({opcode.name}): it "
                    "names a global that cannot be checked; torch.save never writes one"
                )
    except UnsafeWeightsError:
        raise
    except Exception as exc:  # pickletools raises ValueError and friends
        raise WeightsFormatError(f"{source}: data.pkl is not a valid pickle: {exc}") from exc


def unpickle(data: bytes, read_storage: Callable, byteorder: str, source: str):
    """Load ``data.pkl``'s object with tensors as NumPy arrays, refusing unsafe globals."""
    refuse_extension_codes(data, source)
    unpickler = TorchUnpickler(data, read_storage, byteorder, source)
    try:
        obj = unpickler.load()
    except WeightsFormatError:
        raise
    except Exception as exc:  # UnpicklingError, TypeError from a bad call, ...
        raise WeightsFormatError(f"{source}: malformed data.pkl: {exc}") from exc
    if unpickler.unsupported:
        _refuse_unsupported(obj, unpickler.unsupported[0], source)
    return obj


def _refuse_unsupported(obj, first: str, source: str):
    """Raise WeightsFormatError naming the dtype and key of an unsupported tensor."""
    path, dtype = _find_placeholder(obj)
    dtype = dtype or first
    hint = ".dequantize()" if dtype.startswith("q") or dtype == "quantized" else ".float()"
    where = f"in key {path!r}" if path else "in the file"
    raise WeightsFormatError(
        f"{source}: unsupported dtype {dtype} {where}; nplstm reads float, int, bool and "
        f"complex tensors (bfloat16 too): convert with {hint} before saving"
    )


def _find_placeholder(obj) -> tuple[str | None, str | None]:
    """``("a/b", dtype)`` of the first UnsupportedTensor in nested containers.

    Each container is visited once (a pickle may share one object under many keys)
    and at most ``_MAX_WALK`` nodes are looked at.
    """
    seen: set[int] = set()
    stack: list[tuple[object, tuple[str, ...]]] = [(obj, ())]
    budget = _MAX_WALK
    while stack and budget > 0:
        node, path = stack.pop()
        if isinstance(node, UnsupportedTensor):
            return "/".join(path), node.dtype
        if isinstance(node, (dict, list, tuple, set, frozenset)) and id(node) not in seen:
            seen.add(id(node))
            items = (node.items() if isinstance(node, dict)
                     else enumerate(node) if isinstance(node, (list, tuple))
                     else ((None, v) for v in node))
            children: list[tuple[object, tuple[str, ...]]] = []
            for k, v in items:
                budget -= 1
                if budget <= 0:
                    break
                children.append((v, path + (str(k),) if k is not None else path))
                if isinstance(k, UnsupportedTensor):  # as a dict key
                    children.append((k, path))
            stack.extend(reversed(children))
    return None, None
