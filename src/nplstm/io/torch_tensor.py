"""Tensors from ``torch.save`` storages: the stand-ins for torch's dtypes and storages.

A storage is a flat run of bytes (``data/<key>`` in the archive); a tensor is a view of
it given by a storage offset, a shape and strides, all counted in elements. nplstm
copies that view into a fresh C-ordered array (or, for a tensor that is its whole
storage, keeps the buffer), after checking the view stays inside the storage.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from ._common import (
    COPY_ALLOWANCE,
    COPY_RATIO,
    WeightsFormatError,
    bf16_to_float32,
    check_shape,
    is_int,
    numel,
    quote,
)

# torch dtype name -> NumPy dtype ("bfloat16" is read as uint16 bits, then widened).
DTYPES = {
    "float32": "f4", "float64": "f8", "float16": "f2", "bfloat16": "u2",
    "complex64": "c8", "complex128": "c16", "bool": "?",
    "int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8",
    "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8",
}

# Legacy typed storage class -> torch dtype name.
STORAGES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "BoolStorage": "bool", "CharStorage": "int8",
    "ShortStorage": "int16", "IntStorage": "int32", "LongStorage": "int64",
    "ByteStorage": "uint8", "UntypedStorage": "uint8",
}

# Legacy typed storages of dtypes NumPy cannot hold -> torch dtype name.
_UNSUPPORTED_STORAGES = {
    "QInt8Storage": "qint8", "QUInt8Storage": "quint8", "QInt32Storage": "qint32",
    "QUInt4x2Storage": "quint4x2", "QUInt2x4Storage": "quint2x4",
    "ComplexHalfStorage": "complex32",
}

# torch dtype names NumPy has no type for: float8_e4m3fn, float4_e2m1fn_x2, complex32,
# qint8, quint4x2, uint1..uint7, int1..int7, bits8, ... (and future ones of that form).
_DTYPE_NAME = re.compile(r"(?:b?float|complex|q?u?int|bits)\d\w*")


def unsupported_dtype_name(module: str, name: str) -> str | None:
    """The dtype named by global ``module.name`` when it is a torch dtype or typed
    storage nplstm cannot read (``torch.float8_e4m3fn``, ``torch.QInt8Storage``)."""
    if module not in ("torch", "torch.storage", "torch.cuda") or not isinstance(name, str):
        return None
    if name in _UNSUPPORTED_STORAGES:
        return _UNSUPPORTED_STORAGES[name]
    if module == "torch" and name not in DTYPES and _DTYPE_NAME.fullmatch(name):
        return name
    return None


@dataclasses.dataclass(frozen=True)
class UnsupportedTensor:
    """Placeholder for a tensor of an unsupported dtype; never handed to the caller."""

    __slots__ = ("dtype",)

    dtype: str

    def __reduce__(self):
        return UnsupportedTensor, (self.dtype,)


class CopyBudget:
    """How many bytes one file's tensors may copy out of its storages.

    At most ``COPY_RATIO`` times the file's size plus ``COPY_ALLOWANCE``: one running
    total for the whole file, charged before each allocation, so many small expanded
    (stride-0) views, or one storage referenced thousands of times, cannot add up to
    gigabytes. Storages themselves are bytes the file holds.
    """

    def __init__(self, file_bytes: int):
        self.file_bytes = file_bytes
        self.copied_bytes = 0

    def charge(self, nbytes: int, what: str) -> None:
        """Account for a copy of ``nbytes`` before allocating it, or raise."""
        limit = COPY_RATIO * self.file_bytes + COPY_ALLOWANCE
        if self.copied_bytes + nbytes > limit:
            raise WeightsFormatError(
                f"{what}: copying {nbytes} more bytes would bring this file's tensors to "
                f"{self.copied_bytes + nbytes} bytes from a {self.file_bytes}-byte file "
                f"(at most {limit}); an expanded view (stride 0) or a storage "
                "referenced many times? refusing"
            )
        self.copied_bytes += nbytes


@dataclasses.dataclass(frozen=True)
class TorchDtype:
    """Stands in for a ``torch.<dtype>`` global; not callable."""

    __slots__ = ("name",)  # no __dict__: a pickle's BUILD cannot alter it

    name: str

    def __reduce__(self):  # frozen slots classes need this to pickle
        return TorchDtype, (self.name,)

    def numpy(self, byteorder: str) -> np.dtype:
        """The NumPy dtype of the stored bytes, in the file's byte order."""
        return np.dtype(DTYPES[self.name]).newbyteorder(byteorder)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Storage:
    """One ``data/<key>`` entry: raw bytes and the dtype the pickle gave them."""

    __slots__ = ("data", "dtype", "key", "location")  # no __dict__ (see TorchDtype)

    key: str
    dtype: TorchDtype
    location: str
    data: np.ndarray  # (nbytes,) uint8

    def __reduce__(self):
        return Storage, (self.key, self.dtype, self.location, self.data)

    def elements(self, dtype: TorchDtype, byteorder: str) -> np.ndarray:
        """The bytes viewed as a flat array of ``dtype``."""
        np_dtype = dtype.numpy(byteorder)
        if self.data.size % np_dtype.itemsize:
            raise WeightsFormatError(
                f"storage data/{self.key}: {self.data.size} bytes is not a whole number "
                f"of {dtype.name} elements"
            )
        return self.data.view(np_dtype)


def rebuild_tensor(storage, storage_offset, size, stride, dtype, byteorder,
                   budget: CopyBudget, reuse=False) -> np.ndarray:
    """Copy the strided view ``storage[offset + sum(i_k * stride_k)]`` into a new array.

    With ``reuse``, a tensor that is its whole storage in C order is returned as a view
    of the storage's (writable, private) buffer instead of a copy. Every copy is
    charged to ``budget`` before it is made.
    """
    if not isinstance(storage, Storage):
        raise WeightsFormatError(f"tensor: expected a storage, got {type(storage).__name__}")
    what = f"tensor in storage data/{quote(storage.key)[1:-1]}"
    shape = check_shape(size, what)
    strides = check_shape(stride, what + " (stride)", sized=False)
    if len(strides) != len(shape):
        raise WeightsFormatError(f"{what}: shape {shape} and stride {strides} differ in length")
    if not is_int(storage_offset) or storage_offset < 0:
        raise WeightsFormatError(f"{what}: storage offset must be an int >= 0, "
                                 f"got {quote(storage_offset)}")
    flat = storage.elements(dtype, byteorder)  # (storage numel,)
    out_dtype = flat.dtype.newbyteorder("=")
    if numel(shape) == 0:
        return _widen(np.empty(shape, out_dtype), dtype)
    extent = storage_offset + sum((n - 1) * s for n, s in zip(shape, strides)) + 1
    if extent > flat.size:
        raise WeightsFormatError(
            f"{what}: shape {shape}, stride {strides}, offset {storage_offset} reach "
            f"element {extent - 1} but the storage holds {flat.size} elements"
        )
    if reuse and _is_whole(flat, storage_offset, shape, strides, dtype):
        return flat.reshape(shape)
    out_itemsize = 4 if dtype.name == "bfloat16" else flat.itemsize  # after widening
    budget.charge(numel(shape) * out_itemsize, what)
    view = np.lib.stride_tricks.as_strided(
        flat[storage_offset:], shape, [s * flat.itemsize for s in strides], writeable=False
    )
    return _widen(np.array(view, dtype=out_dtype, order="C"), dtype)  # a C-order copy


def _is_whole(flat: np.ndarray, offset: int, shape, strides, dtype: TorchDtype) -> bool:
    """True when ``shape``/``strides`` cover all of ``flat`` in C order, natively."""
    expected, step = [], 1
    for n in reversed(shape):
        expected.append(step)
        step *= n
    c_order = all(n == 1 or s == e for n, s, e in zip(shape, strides, reversed(expected)))
    return (offset == 0 and numel(shape) == flat.size and c_order and flat.dtype.isnative
            and flat.flags.writeable and dtype.name != "bfloat16")


def _widen(array: np.ndarray, dtype: TorchDtype) -> np.ndarray:
    """bfloat16 bits -> float32; every other dtype as is."""
    return bf16_to_float32(array) if dtype.name == "bfloat16" else array
