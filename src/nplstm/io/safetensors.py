"""Read and write ``.safetensors`` with NumPy alone.

The format (https://github.com/huggingface/safetensors) is::

    8 bytes     N, the header length, unsigned little-endian
    N bytes     JSON: {"name": {"dtype": "F32", "shape": [4, 3],
                                "data_offsets": [begin, end]}, ...,
                       "__metadata__": {"str": "str"}}   (optional)
    the rest    the tensors' bytes, little-endian, C order; offsets count from here

Why our own parser rather than the ``safetensors`` package: the format is this small
(about a hundred lines to read, validate and write), so parsing it directly removes a
compiled dependency from deployments, and it lets nplstm read BF16, which the
package's NumPy API cannot hand over (NumPy has no bfloat16). Every header field is
checked before any tensor is allocated, as strictly as the package checks it: each
tensor's offsets must match its dtype and shape, and the tensors, sorted by offset,
must cover the data bytes exactly (no gap, no overlap, nothing after the last one).
Files written here load with the package.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from ._common import WeightsFormatError, bf16_to_float32, check_shape, is_int, numel
from .pickle_vm import quote

# The reference implementation refuses headers above 100 MB too.
MAX_HEADER_BYTES = 100_000_000

# safetensors dtype -> NumPy dtype (BF16 is read as uint16 bits, then widened).
_DTYPES = {
    "BOOL": "?", "U8": "u1", "I8": "i1", "U16": "u2", "I16": "i2", "U32": "u4",
    "I32": "i4", "U64": "u8", "I64": "i8", "F16": "f2", "BF16": "u2", "F32": "f4",
    "F64": "f8", "C64": "c8",
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items() if k != "BF16"}


def read_safetensors(path) -> dict[str, np.ndarray]:
    """The tensors of a ``.safetensors`` file, in header order; BF16 widened to float32.

    Raises:
        WeightsFormatError: the header is malformed, or an entry's dtype, shape and
            offsets disagree, overlap or point past the end of the file.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header, data_start = _read_header(f, size, path)
        entries = _check_entries(header, size - data_start, path)
        return {name: _read_tensor(f, data_start, *entry) for name, entry in entries.items()}


def _read_header(f, size: int, path) -> tuple[dict, int]:
    """Parse the length prefix and JSON header; return it and where the data starts."""
    prefix = f.read(8)
    if len(prefix) < 8:
        raise WeightsFormatError(f"{path}: {size} bytes is too short for a safetensors file")
    (length,) = struct.unpack("<Q", prefix)
    if length > min(MAX_HEADER_BYTES, size - 8):
        raise WeightsFormatError(
            f"{path}: header length {length} exceeds the file ({size} bytes) or the "
            f"{MAX_HEADER_BYTES}-byte limit; not a safetensors file, or truncated"
        )
    raw = f.read(length)
    if len(raw) != length:
        raise WeightsFormatError(f"{path}: the file ends inside the header")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # json guards depth
        raise WeightsFormatError(f"{path}: header is not valid JSON: "
                                 f"{quote(str(exc), 200)}") from None
    if not isinstance(header, dict):
        raise WeightsFormatError(f"{path}: header must be a JSON object, got "
                                 f"{type(header).__name__}")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(v, str) for v in metadata.values())):
        raise WeightsFormatError(f"{path}: __metadata__ must map strings to strings")
    return header, 8 + length


def _no_duplicates(pairs):
    """json object hook: a key given twice is an error, not a silent overwrite."""
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate key {quote(k)}")
        if not k.isascii():  # "\ud800" is valid JSON but no UTF-8 text (RFC 8259 8.2)
            k.encode("utf-8")  # UnicodeEncodeError (a ValueError) for a lone surrogate
        obj[k] = v
    return obj


def _check_entries(header: dict, data_size: int, path) -> dict:
    """Validate every entry; return ``name -> (dtype_name, shape, begin, end)``.

    Like the reference ``safetensors`` package: sorted by ``(begin, end)``, each tensor
    must start where the previous one ended, and the last must end at the file's end.
    """
    entries = {name: _check_entry(name, spec, data_size, path) for name, spec in header.items()}
    position, previous = 0, None
    for begin, end, name in sorted((e[2], e[3], name) for name, e in entries.items()):
        if begin != position:
            problem = "overlap" if begin < position else "leave a gap"
            after = f"tensor {quote(previous)}, which ends at" if previous else "the data start,"
            raise WeightsFormatError(
                f"{path}: tensor {quote(name)} starts at data byte {begin}, not right after "
                f"{after} {position}: tensors {problem}"
            )
        position, previous = end, name
    if position != data_size:
        raise WeightsFormatError(
            f"{path}: the tensors end at data byte {position} but the file holds "
            f"{data_size} data bytes; trailing bytes are not allowed"
        )
    return entries


def _check_entry(name: str, spec, data_size: int, path):
    """One header entry -> ``(dtype_name, shape, begin, end)``, or a clear error."""
    what = f"{path}: tensor {quote(name)}"
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise WeightsFormatError(f"{what}: expected keys dtype, shape, data_offsets, got "
                                 f"{quote(list(spec) if isinstance(spec, dict) else spec)}")
    dtype = spec["dtype"]
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise WeightsFormatError(f"{what}: dtype {quote(dtype)} is not supported; nplstm "
                                 f"reads {', '.join(_DTYPES)}")
    shape = check_shape(spec["shape"], what)
    offsets = spec["data_offsets"]
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(is_int, offsets))):
        raise WeightsFormatError(f"{what}: data_offsets must be [begin, end], got "
                                 f"{quote(offsets)}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise WeightsFormatError(f"{what}: data_offsets {offsets} fall outside the "
                                 f"{data_size} data bytes (file truncated or header wrong)")
    nbytes = numel(shape) * np.dtype(_DTYPES[dtype]).itemsize
    if end - begin != nbytes:
        raise WeightsFormatError(f"{what}: shape {list(shape)} of {dtype} needs {nbytes} "
                                 f"bytes, data_offsets span {end - begin}")
    return dtype, shape, begin, end


def _read_tensor(f, data_start: int, dtype: str, shape, begin: int, end: int) -> np.ndarray:
    """Read one validated tensor into a fresh array."""
    array = np.empty(shape, dtype=np.dtype(_DTYPES[dtype]).newbyteorder("<"))
    f.seek(data_start + begin)
    if f.readinto(array.reshape(-1).view(np.uint8)) != end - begin:
        raise WeightsFormatError(f"{f.name}: file ended inside a tensor")
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    return bf16_to_float32(array) if dtype == "BF16" else array


def write_safetensors(f, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (already validated) to the binary file ``f``.

    Tensors are laid out largest itemsize first, so each is aligned to its own size;
    the header is padded with spaces to a multiple of 8 bytes, as the reference does.
    """
    order = sorted(arrays, key=lambda k: -arrays[k].dtype.itemsize)  # stable
    offsets, position = {}, 0
    for name in order:
        offsets[name] = [position, position + arrays[name].nbytes]
        position += arrays[name].nbytes
    header = {
        name: {"dtype": _NAMES[a.dtype.newbyteorder("=")], "shape": list(a.shape),
               "data_offsets": offsets[name]}
        for name, a in arrays.items()
    }
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for name in order:
        write_array_bytes(f, arrays[name])


def write_array_bytes(f, array: np.ndarray) -> None:
    """Write one array's bytes, little-endian and C order."""
    little = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
    f.write(little.reshape(-1).view(np.uint8).data)
