"""What a ``torch.save`` pickle's globals and persistent ids mean, without torch.

:mod:`nplstm.io.pickle_vm` runs the pickle; this module is its :class:`Resolver`: the
allowlist of globals (what torch's own ``weights_only`` loader allows, minus tensor
subclasses, sparse, nested and meta tensors), each mapped to a small function that
returns plain data, and storages read from the file. Any other global (``os.system``,
a model class) raises UnsafeWeightsError when the pickle names it; nothing is ever
imported or called by name, so no code from the file can run.

What comes back: tensors and parameters as NumPy arrays; ``OrderedDict`` and
``Counter`` as dict; ``torch.Size`` as tuple; ``bytearray`` as bytes; ``set``,
``frozenset`` and ``complex`` as themselves; ``torch.device`` as its string
(``'cuda:0'``); dtypes, layouts, storage types and quantization schemes as their names
(``'torch.float16'``, ``'torch.strided'``). (Source: torch/_weights_only_unpickler.py,
torch/_utils.py, torch/serialization.py.)
"""

from __future__ import annotations

import _compat_pickle  # the stdlib's Python 2 -> 3 name table
from typing import Any, Callable

import numpy as np

from ._common import UnsafeWeightsError, WeightsFormatError, is_int
from .pickle_vm import Global, Internal, Resolver, quote, run_pickle
from .torch_tensor import (
    DTYPES,
    STORAGES,
    CopyBudget,
    Storage,
    TorchDtype,
    UnsupportedTensor,
    rebuild_tensor,
    unsupported_dtype_name,
)

_QSCHEMES = ("per_tensor_affine", "per_channel_affine", "per_tensor_symmetric",
             "per_channel_symmetric", "per_channel_affine_float_qparams")
_LAYOUTS = ("strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr",
            "sparse_bsc", "_mkldnn", "jagged")
_BUILTINS = ("builtins", "__builtin__")

# Element sizes of the legacy typed storages NumPy cannot hold (their bytes are skipped).
_UNSUPPORTED_ITEMSIZES = {"qint32": 4, "complex32": 4}

# Searching the loaded object for unsupported tensors visits at most this many nodes.
_MAX_WALK = 10_000_000


def _storage_names() -> dict[str, str]:
    """``'torch.FloatStorage'`` (and ``torch.cuda.``/``torch.storage.``) -> dtype name."""
    names = {}
    for name, dtype in STORAGES.items():
        for module in ("torch", "torch.storage", "torch.cuda"):
            names[f"{module}.{name}"] = dtype
    return names


STORAGE_NAMES = _storage_names()


class _UnsupportedStorage(Internal):
    """A storage of a dtype NumPy lacks (legacy ``QInt8Storage``): never read."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: str):
        self.dtype = dtype


class _StorageRef(Internal):
    """A storage as a call argument (wraps :class:`Storage`, or ``None`` in a dry run)."""

    __slots__ = ("storage",)

    def __init__(self, storage):
        self.storage = storage


class TorchResolver(Resolver):
    """Globals and persistent ids of a ``torch.save`` pickle, zip or legacy format.

    ``read_storage(key, nbytes)`` returns the bytes of storage ``key`` as a uint8 array,
    checked to be ``nbytes`` long. With ``dry=True`` nothing is read and tensors come
    back as ``None``: the legacy reader's first pass, which only learns each storage's
    element size (``self.itemsizes``).
    """

    def __init__(self, read_storage: Callable, byteorder: str, source: str,
                 budget: CopyBudget, dry: bool = False):
        self._read_storage, self._byteorder, self._source = read_storage, byteorder, source
        self.budget, self.dry = budget, dry
        self._storages: dict[str, Storage] = {}
        self._reused: set[str] = set()  # storages already handed out as an array
        self.itemsizes: dict[str, int] = {}
        self.unsupported: list[str] = []  # dtypes of UnsupportedTensor placeholders made
        self._calls = {
            "torch._utils._rebuild_tensor_v2": self._rebuild_tensor_v2,
            "torch._utils._rebuild_tensor_v3": self._rebuild_tensor_v3,
            "torch._utils._rebuild_tensor": self._rebuild_tensor,
            "torch._utils._rebuild_parameter": self._rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": self._rebuild_parameter,
            "torch._utils._rebuild_qtensor": self._rebuild_qtensor,
            "collections.OrderedDict": _ordered_dict,
            "collections.Counter": _ordered_dict,
            "torch.device": _device,
            "torch.Size": _size,
            "torch.serialization._get_layout": _layout,
            "_codecs.encode": _encode_bytes,
            "builtins.set": None,
            "builtins.frozenset": None,
            "builtins.complex": _complex,
            "builtins.bytearray": _bytearray,
        }

    # ---- globals ----------------------------------------------------------------------

    def find_global(self, module, name) -> Global:
        """A :class:`Global` for an allowed name; UnsafeWeightsError for any other."""
        full = f"{'builtins' if module in _BUILTINS else module}.{name}"
        if full in self._calls:
            kind = ("ordered_dict" if full.startswith("collections.") else
                    full[len("builtins."):] if self._calls[full] is None else None)
            return Global(full, kind=kind)
        value = _value_name(module, name)
        if value is not None:
            return Global(full, value=value)
        hint = ("torch.save(model.state_dict(), 'weights.pt')" if module.split(".")[0] != "numpy"
                else "NumPy arrays as tensors, torch.save({k: torch.from_numpy(v), ...}), "
                "or as an .npz file")
        raise UnsafeWeightsError(
            f"{self._source}: refusing to load global {_global_name(module, name)}: the "
            "pickle may run code, and nplstm only rebuilds tensors and plain containers. If "
            f"you trust the file, load it with torch and save just the weights: {hint}"
        )

    def call(self, glob: Global, args: tuple):
        """Run the stand-in of an allowed callable global on ``args``."""
        function = self._calls.get(glob.name)
        if function is None:
            raise WeightsFormatError(f"{self._source}: {glob.name} is not callable")
        try:
            return function(*args)
        except WeightsFormatError as exc:  # name the file, once
            if str(exc).startswith(self._source):
                raise
            raise type(exc)(f"{self._source}: {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:  # wrong count, absurd values
            raise WeightsFormatError(f"{self._source}: {glob.name}: bad arguments "
                                     f"({quote(args)}): {quote(str(exc), 200)}") from None

    # ---- storages -------------------------------------------------------------------

    def persistent(self, pid):
        """``('storage', type, key, location, numel[, view])`` -> a storage argument.

        The 6th item is the legacy format's view: ``None`` or ``(view_key, offset,
        size)``, a run of ``size`` elements from ``offset`` of the root storage.
        """
        if type(pid) is not tuple or len(pid) not in (5, 6) or pid[0] != "storage":
            raise WeightsFormatError(f"{self._source}: unsupported persistent id {quote(pid)}")
        kind, key, location, count = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if type(key) is not str or type(location) is not str or not is_int(count) or count < 0:
            raise WeightsFormatError(f"{self._source}: malformed storage id {quote(pid)}")
        dtype = STORAGE_NAMES.get(kind) if type(kind) is str else None
        if dtype is None:
            unsupported = kind[6:] if type(kind) is str and kind.startswith("torch.") else None
            if unsupported and unsupported_dtype_name("torch", unsupported):
                name = unsupported_dtype_name("torch", unsupported)
                if self.dry:  # the legacy layout still needs its element size
                    self.itemsizes.setdefault(key, _UNSUPPORTED_ITEMSIZES.get(name, 1))
                return _UnsupportedStorage(name)
            raise WeightsFormatError(f"{self._source}: malformed storage id {quote(pid)}: "
                                     f"{quote(kind)} is not a storage type")
        root = self._root(key, TorchDtype(dtype), location, count,
                          typed=not kind.endswith(".UntypedStorage"))
        return _StorageRef(root if view is None else self._view(root, view))

    def _root(self, key: str, dtype: TorchDtype, location: str, count: int,
              typed: bool = True):
        if self.dry:  # the legacy format's first pass: learn the element size
            itemsize = dtype.numpy("<").itemsize
            if self.itemsizes.setdefault(key, itemsize) != itemsize:
                raise WeightsFormatError(f"{self._source}: storage {quote(key)} is given "
                                         "two element sizes")
            return None
        if key not in self._storages:
            data = self._read_storage(key, count * dtype.numpy("<").itemsize)  # (nbytes,) uint8
            self._storages[key] = Storage(key, dtype, location, data)
        elif typed and self._storages[key].dtype != dtype:  # torch.save refuses this
            # (an UntypedStorage comes with _rebuild_tensor_v3, which names its dtype)
            raise WeightsFormatError(
                f"{self._source}: storage {quote(key)} is given two dtypes, "
                f"{self._storages[key].dtype.name} and {dtype.name}; torch.save refuses "
                "to save tensors that view one storage as different types"
            )
        return self._storages[key]

    def _view(self, root, view):
        """The legacy format's storage view ``(view_key, offset, size)`` of ``root``."""
        if not (type(view) is tuple and len(view) == 3 and type(view[0]) is str
                and is_int(view[1]) and is_int(view[2]) and view[1] >= 0 and view[2] >= 0):
            raise WeightsFormatError(f"{self._source}: malformed storage view {quote(view)}")
        if root is None:
            return None
        key, offset, size = view
        itemsize = root.dtype.numpy("<").itemsize
        if (offset + size) * itemsize > root.data.size:
            raise WeightsFormatError(f"{self._source}: storage view {quote(key)} reaches past "
                                     f"its storage {quote(root.key)}")
        data = root.data[offset * itemsize:(offset + size) * itemsize]  # (nbytes,) uint8
        data.flags.writeable = False  # shared with the root: always copied out
        return Storage(key, root.dtype, root.location, data)

    # ---- tensors --------------------------------------------------------------------

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad,
                           backward_hooks, metadata=None):
        """Stand-in for ``torch._utils._rebuild_tensor_v2``: the storage's own dtype."""
        _check_flag(requires_grad, backward_hooks)
        return self._rebuild_tensor(storage, storage_offset, size, stride)

    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        """Stand-in for ``torch._utils._rebuild_tensor`` (typed storage, no flags)."""
        if isinstance(storage, _UnsupportedStorage):
            return self._placeholder(storage.dtype)
        ref = _storage_ref(storage)
        return self._tensor(ref, storage_offset, size, stride, None if ref is None else ref.dtype)

    def _rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad,
                           backward_hooks, dtype, metadata=None):
        """Stand-in for ``torch._utils._rebuild_tensor_v3``: untyped bytes and a dtype."""
        _check_flag(requires_grad, backward_hooks)
        name = dtype[6:] if type(dtype) is str and dtype.startswith("torch.") else None
        if name is not None and name not in DTYPES and unsupported_dtype_name("torch", name):
            return self._placeholder(unsupported_dtype_name("torch", name))
        if name not in DTYPES:
            raise WeightsFormatError(f"{self._source}: tensor: expected a torch dtype, "
                                     f"got {quote(dtype)}")
        return self._tensor(_storage_ref(storage), storage_offset, size, stride,
                            TorchDtype(name))

    def _rebuild_qtensor(self, storage, storage_offset, size, stride, quantizer_params,
                         requires_grad, backward_hooks):
        """Stand-in for ``torch._utils._rebuild_qtensor``: a placeholder, never read."""
        _check_flag(requires_grad, backward_hooks)
        name = storage.dtype if isinstance(storage, _UnsupportedStorage) else "quantized"
        return self._placeholder(name)

    def _placeholder(self, dtype_name: str) -> UnsupportedTensor:
        """A tensor nplstm cannot represent; :func:`unpickle` reports where it sits."""
        self.unsupported.append(dtype_name)
        return UnsupportedTensor(dtype_name)

    def _tensor(self, storage, storage_offset, size, stride, dtype):
        """Rebuild one tensor; the first to cover a whole storage may keep its buffer."""
        if self.dry:
            return None
        reuse = storage.key not in self._reused
        array = rebuild_tensor(storage, storage_offset, size, stride, dtype,
                               self._byteorder, self.budget, reuse)
        if reuse and np.may_share_memory(array, storage.data):
            self._reused.add(storage.key)
        return array

    def _rebuild_parameter(self, data, requires_grad, backward_hooks, state=None):
        """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the array."""
        _check_flag(requires_grad, backward_hooks)
        if isinstance(data, (np.ndarray, UnsupportedTensor)) or (self.dry and data is None):
            return data
        raise WeightsFormatError(f"parameter: expected a tensor, got {quote(data)}")


def _storage_ref(storage):
    if not isinstance(storage, _StorageRef):
        raise WeightsFormatError(f"tensor: expected a storage, got {quote(storage)}")
    return storage.storage


def _check_flag(requires_grad, backward_hooks) -> None:
    """The two tensor flags every rebuild function receives; their values are unused."""
    if not isinstance(requires_grad, bool):
        raise WeightsFormatError(f"tensor: requires_grad must be a bool, got "
                                 f"{quote(requires_grad)}")
    if not isinstance(backward_hooks, dict):
        raise WeightsFormatError(f"tensor: backward_hooks must be a dict, got "
                                 f"{quote(backward_hooks)}")


def _value_name(module: str, name: str) -> str | None:
    """``'torch.float16'`` for a dtype, layout, storage type or qscheme global."""
    if module == "torch" and (name in DTYPES or name in _QSCHEMES or name in _LAYOUTS):
        return f"torch.{name}"
    if f"{module}.{name}" in STORAGE_NAMES:
        return f"{module}.{name}"
    unsupported = unsupported_dtype_name(module, name)
    if unsupported is not None:  # float8 dtypes, QInt8Storage: inert names
        return f"torch.{name}"
    return None


def _global_name(module: str, name: str) -> str:
    """``'module.name'``, plus its Python 3 name for a protocol-2 alias (``__builtin__``)."""
    text = f"'{quote(module, 100)[1:-1]}.{quote(name, 100)[1:-1]}'"
    module3, name3 = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    module3 = _compat_pickle.IMPORT_MAPPING.get(module3, module3)
    return text if (module3, name3) == (module, name) else f"{text} ({module3}.{name3})"


def _ordered_dict(*args) -> dict:
    """``OrderedDict()`` / ``Counter()``: a plain dict (items come from SETITEMS)."""
    if args:
        raise WeightsFormatError(f"OrderedDict: expected no arguments, got {quote(args)}")
    return {}


def _device(kind, index=None) -> str:
    """Stand-in for ``torch.device``: its string, e.g. ``'cuda:0'``."""
    if type(kind) is not str or len(kind) > 64 or not (
            index is None or (is_int(index) and -1 <= index < 1 << 31)):
        raise WeightsFormatError(f"torch.device: bad arguments {quote(kind)}, {quote(index)}")
    return kind if index is None else f"{kind}:{index}"


def _size(dims) -> tuple:
    """``torch.Size(dims)``: the tuple of ints."""
    if type(dims) not in (tuple, list) or not all(is_int(n) for n in dims):
        raise WeightsFormatError(f"torch.Size: expected a tuple of ints, got {quote(dims)}")
    return tuple(dims)


def _layout(name) -> str:
    """``torch.serialization._get_layout('torch.strided')``: the name."""
    if type(name) is not str or name[6:] not in _LAYOUTS or not name.startswith("torch."):
        raise WeightsFormatError(f"_get_layout: unknown layout {quote(name)}")
    return name


def _encode_bytes(text, encoding="utf-8") -> bytes:
    """Stand-in for ``_codecs.encode``, which protocol-2 pickles use for ``bytes``."""
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise WeightsFormatError(f"_codecs.encode: only (str, 'latin1') is allowed, "
                                 f"got {quote(text)}, {quote(encoding)}")
    try:
        return text.encode("latin1")
    except UnicodeEncodeError:
        raise WeightsFormatError("_codecs.encode: text outside latin-1") from None


def _bytearray(data=b"", encoding=None) -> bytes:
    """``bytearray(bytes)`` (or ``(str, 'latin-1')``): the bytes, immutable."""
    if type(data) is str and encoding is not None:
        return _encode_bytes(data, encoding)
    if type(data) is not bytes or encoding is not None:
        raise WeightsFormatError(f"bytearray: expected bytes, got {quote(data)}")
    return data


def _complex(real=0.0, imag=0.0) -> complex:
    """``complex(real, imag)`` from two numbers."""
    if not all(type(x) in (int, float) for x in (real, imag)):
        raise WeightsFormatError(f"complex: expected two numbers, got {quote(real)}, "
                                 f"{quote(imag)}")
    return complex(real, imag)


def unpickle(data: bytes | memoryview, read_storage: Callable, byteorder: str, source: str,
             budget: CopyBudget, start: int = 0, dry: bool = False):
    """Run the pickle at ``data[start:]`` with tensors as arrays; ``(value, end, resolver)``."""
    resolver = TorchResolver(read_storage, byteorder, source, budget, dry)
    obj, end = run_pickle(data, resolver, source, start)
    if resolver.unsupported and not dry:
        _refuse_unsupported(obj, resolver.unsupported[0], source)
    return obj, end, resolver


def _refuse_unsupported(obj, first: str, source: str):
    """Raise WeightsFormatError naming the dtype and key of an unsupported tensor."""
    path, dtype = _find_placeholder(obj)
    dtype = dtype or first
    hint = ".dequantize()" if dtype.startswith("q") or dtype == "quantized" else ".float()"
    where = f"in key {quote(path, 200)}" if path else "in the file"
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
    stack: list[tuple[Any, tuple[str, ...]]] = [(obj, ())]
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
            children: list[tuple[Any, tuple[str, ...]]] = []
            for k, v in items:
                budget -= 1
                if budget <= 0:
                    break
                children.append((v, path + (quote(k, 40) if type(k) is not str else k,)
                                 if k is not None else path))
            stack.extend(reversed(children))
    return None, None
