"""Read and write ``.npz`` state dicts: one ``<key>.npy`` entry per tensor.

Reading does not call ``np.load`` on the archive: each ``.npy`` header is parsed and
checked against the bytes its entry really holds before anything is allocated (a
forged header claiming a 10**12-element array would otherwise make NumPy allocate it),
and object arrays are refused -- pickles never load.
"""

from __future__ import annotations

import os
import re
import struct
import zipfile

import numpy as np

from ._common import (
    _ZIP_ERRORS,
    WeightsFormatError,
    check_shape,
    check_zip_archive,
    native,
    numel,
    open_zip,
)
from .pickle_vm import quote

# A .npy header is a Python dict literal (numpy/lib/format.py, NEP 1):
#   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
# parsed here with a strict grammar instead of ast.literal_eval, so no header can
# raise anything but WeightsFormatError (or warn, as NumPy does for '(4L,)').
_ITEM = re.compile(r"\s*'(descr|fortran_order|shape)'\s*:\s*"
                   r"('[^'\\]{0,16}'|True|False|\(\s*(?:\d{1,19}\s*,\s*)*(?:\d{1,19}\s*)?\))\s*")
_DESCR = re.compile(r"[<>|=]?(?:b1|[iu][1248]|f[248]|c(?:8|16))")
_MAX_HEADER = 65536


def read_npz(path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (``np.savez`` or ``np.savez_compressed``)."""
    size = os.path.getsize(path)
    with open_zip(path, "cannot read the .npz (zip) archive") as zf:
        check_zip_archive(zf, path, size)
        return {_key(info, path): _read_entry(zf, info, path) for info in zf.infolist()
                if not info.filename.endswith("/")}


def _key(info: zipfile.ZipInfo, path) -> str:
    """``'lstm.weight_ih_l0.npy'`` -> ``'lstm.weight_ih_l0'``."""
    if not info.filename.endswith(".npy"):
        raise WeightsFormatError(f"{path}: entry {quote(info.filename)} is not a .npy array")
    return info.filename[: -len(".npy")]


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path) -> np.ndarray:
    """Parse one ``.npy`` entry's header, check it, then read its data.

    The data is inflated straight into the array's buffer, a chunk at a time, so an
    entry costs its own size once (not the entry's bytes plus a copy of them).
    """
    what = f"{path}: array {quote(_key(info, path))}"
    try:
        buffer, shape, fortran, dtype = _inflate(zf, info, what)
    except WeightsFormatError:
        raise
    except (OSError, *_ZIP_ERRORS) as exc:  # a seek or read that the damage sent astray
        raise WeightsFormatError(f"{path}: cannot read zip entry {quote(info.filename)} "
                                 f"({type(exc).__name__}: {quote(str(exc), 120)})") from None
    flat = buffer.view(dtype)  # (numel,)
    if fortran:
        return native(np.array(flat.reshape(shape[::-1]).T, order="C"))  # (shape)
    return native(flat.reshape(shape))  # (shape), C order, writable, its own buffer


_CHUNK = 1 << 20


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str):
    """``(buffer, shape, fortran, dtype)``: the header parsed, the data in a new buffer."""
    with zf.open(info) as entry:
        head = entry.read(12)  # magic, version, header length (numpy.lib.format)
        fmt = "<H" if head[6:7] == b"\x01" else "<I"
        start = 10 if fmt == "<H" else 12
        length = struct.unpack_from(fmt, head, start - 2 if fmt == "<H" else 8)[0] \
            if len(head) >= start else 0
        head += entry.read(max(0, min(length, _MAX_HEADER + 1) + start - len(head)))
        shape, fortran, dtype, offset = parse_npy_header(head, what)
        nbytes = numel(shape) * dtype.itemsize
        if info.file_size - offset != nbytes:
            raise WeightsFormatError(f"{what}: header says shape {shape} of {dtype} "
                                     f"({nbytes} bytes), the entry holds "
                                     f"{info.file_size - offset}")
        buffer = np.empty(nbytes, dtype=np.uint8)  # (nbytes,)
        buffer[:len(head) - offset] = np.frombuffer(head, np.uint8, offset=offset)
        filled = len(head) - offset
        while filled < nbytes:
            got = entry.readinto(buffer.data[filled:filled + _CHUNK])  # type: ignore[attr-defined]
            if not got:
                raise WeightsFormatError(f"{what}: the entry ends after {filled} of "
                                         f"{nbytes} data bytes")
            filled += got
        if entry.read(1):
            raise WeightsFormatError(f"{what}: the entry holds more than its "
                                     f"{nbytes} data bytes")
    return buffer, shape, fortran, dtype


def parse_npy_header(data: bytes, what: str):
    """``(shape, fortran_order, dtype, data_offset)`` of one ``.npy`` blob.

    Format (numpy.lib.format): ``\\x93NUMPY``, major and minor version bytes, the
    header length (uint16 LE for 1.0, uint32 LE for 2.0/3.0), the header (latin-1 for
    1.0/2.0, UTF-8 for 3.0) padded with spaces and ending in a newline.
    """
    if data[:6] != b"\x93NUMPY" or len(data) < 8:
        raise WeightsFormatError(f"{what}: bad .npy header: not a .npy array (starts with "
                                 f"{quote(data[:8])})")
    major = data[6]
    if major not in (1, 2, 3):
        raise WeightsFormatError(f"{what}: unsupported .npy version {major}.{data[7]}")
    fmt, start = ("<H", 10) if major == 1 else ("<I", 12)
    if len(data) < start:  # pragma: no branch
        raise WeightsFormatError(f"{what}: .npy header truncated")
    (length,) = struct.unpack_from(fmt, data, start - struct.calcsize(fmt))
    if length > _MAX_HEADER or start + length > len(data):
        raise WeightsFormatError(f"{what}: .npy header of {length} bytes does not fit")
    text = data[start:start + length].decode("latin-1" if major < 3 else "utf-8", "replace")
    fields = _header_fields(text.rstrip(" \n"), what)
    return _header_values(fields, what) + (start + length,)


def _header_fields(text: str, what: str) -> dict[str, str]:
    """``{'descr': "'<f4'", ...}`` from the dict literal, or WeightsFormatError."""
    if not (text.startswith("{") and text.endswith("}")):
        raise WeightsFormatError(f"{what}: bad .npy header {quote(text)}")
    body, fields, pos = text[1:-1], {}, 0
    while pos < len(body) and body[pos:].strip():
        match = _ITEM.match(body, pos)
        if match is None or match.group(1) in fields:
            raise WeightsFormatError(f"{what}: bad .npy header {quote(text)}")
        fields[match.group(1)] = match.group(2)
        pos = match.end()
        if pos < len(body) and body[pos] == ",":
            pos += 1
        elif body[pos:].strip():
            raise WeightsFormatError(f"{what}: bad .npy header {quote(text)}")
    if set(fields) != {"descr", "fortran_order", "shape"}:
        raise WeightsFormatError(f"{what}: .npy header needs descr, fortran_order and "
                                 f"shape, got {quote(text)}")
    return fields


def _header_values(fields: dict[str, str], what: str):
    """``(shape, fortran, dtype)`` from the header's three fields."""
    descr = fields["descr"][1:-1] if fields["descr"].startswith("'") else None
    if descr is None or not _DESCR.fullmatch(descr):
        raise WeightsFormatError(f"{what}: dtype {quote(fields['descr'])} is not numeric; "
                                 "nplstm reads bool, int, uint, float and complex arrays; "
                                 "object arrays are refused (they would need pickle)")
    if fields["fortran_order"] not in ("True", "False"):
        raise WeightsFormatError(f"{what}: fortran_order must be True or False")
    shape = tuple(int(n) for n in fields["shape"][1:-1].replace(",", " ").split())
    return check_shape(shape, what), fields["fortran_order"] == "True", np.dtype(descr)


def write_npz(f, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (already validated) as an uncompressed ``.npz`` to ``f``.

    Written entry by entry rather than with ``np.savez(f, **arrays)``, which fails on
    a key named ``file`` or ``allow_pickle``.
    """
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, array in arrays.items():
            with zf.open(key + ".npy", mode="w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.asarray(array, order="C"),
                                          allow_pickle=False)
