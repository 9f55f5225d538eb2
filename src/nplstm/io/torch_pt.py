"""Read ``torch.save`` files (.pt/.pth) without torch.

Since PyTorch 1.6, ``torch.save`` writes a zip archive::

    <name>/data.pkl        the pickled object; tensors point at storages by key
    <name>/data/<key>      raw bytes of each storage (uncompressed)
    <name>/byteorder       "little" or "big" (absent in old files: little)
    <name>/version, ...    bookkeeping nplstm does not need

``<name>`` is the file's stem at save time, so any single top folder is accepted.
The pickle is loaded by :mod:`nplstm.io.torch_pickle`, which refuses every global a
state_dict does not need.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

from ._common import (
    WeightsFormatError,
    check_zip_archive,
    check_zip_entry,
    damaged_zip_errors,
    read_zip_entry,
)
from .torch_pickle import unpickle

# The first bytes of a pre-1.6 ``torch.save`` file: the pickled magic number.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"

_RESAVE_HINT = (
    "load it once with torch and save it again with a current PyTorch: "
    "torch.save(torch.load(path), path) writes the zip format (the default since 1.6)"
)


def read_pt(path) -> object:
    """The object ``torch.save`` wrote to ``path``, every tensor a NumPy array.

    Tensors come back as C-contiguous arrays in native byte order, none sharing memory
    with another (views that shared a storage are copied); bfloat16 is widened to
    float32 exactly; tensors saved from a GPU are read from their bytes (the device tag
    is ignored). Only
    state-dict-like content loads: tensors, dicts, lists, tuples, sets, numbers,
    strings, bytes, ``torch.device`` (read as its string) and torch dtypes.

    Raises:
        WeightsFormatError: the file is not a readable zip-format ``torch.save`` file.
        UnsafeWeightsError: the pickle names a global outside that allowlist.
    """
    _check_not_legacy(path)
    with open(path, "rb") as f, damaged_zip_errors(path, "cannot read the zip archive"), \
            zipfile.ZipFile(f) as zf:
        return _read_archive(zf, path)


def _check_not_legacy(path) -> None:
    """Explain the pre-1.6 format and non-torch files before zipfile's terse error."""
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head.startswith(b"PK"):
        return
    if head == _LEGACY_MAGIC:
        raise WeightsFormatError(
            f"{path}: saved in the legacy (pre-1.6) torch.save format, which nplstm does "
            f"not read; {_RESAVE_HINT}"
        )
    if os.path.getsize(path) == 0:
        raise WeightsFormatError(f"{path}: the file is empty")
    raise WeightsFormatError(
        f"{path}: not a torch.save zip archive (starts with {head[:8]!r}, expected b'PK')"
    )


def _read_archive(zf: zipfile.ZipFile, path) -> object:
    """Find ``<top>/data.pkl``, then unpickle it with storages read on demand."""
    check_zip_archive(zf, path)
    top = _top_folder(zf, path)
    pickled = read_zip_entry(zf, zf.getinfo(f"{top}/data.pkl"), path)
    byteorder = _byteorder(zf, top, path)

    def read_storage(key: str, nbytes: int) -> np.ndarray:
        return _read_storage(zf, f"{top}/data/{key}", nbytes, path)

    return unpickle(pickled, read_storage, byteorder, source=str(path))


def _top_folder(zf: zipfile.ZipFile, path) -> str:
    """The archive's single top folder, the one holding ``data.pkl``."""
    names = zf.namelist()
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise WeightsFormatError(
            f"{path}: a TorchScript archive (torch.jit.save), not a torch.save file; "
            "save the weights with torch.save(model.state_dict(), path)"
        )
    tops = [n[: -len("/data.pkl")] for n in names if n.endswith("/data.pkl")]
    tops = [t for t in tops if t and "/" not in t]
    if len(tops) == 1:
        return tops[0]
    if not tops:
        raise WeightsFormatError(
            f"{path}: zip archive without '<folder>/data.pkl'; not a torch.save file "
            f"(entries: {', '.join(names[:5]) or 'none'})"
        )
    raise WeightsFormatError(f"{path}: several data.pkl folders: {', '.join(tops)}")


def _byteorder(zf: zipfile.ZipFile, top: str, path) -> str:
    """``'<'`` or ``'>'`` from the ``byteorder`` entry (little when absent)."""
    try:
        info = zf.getinfo(f"{top}/byteorder")
    except KeyError:
        return "<"
    text = read_zip_entry(zf, info, path).decode("ascii", "replace").strip()
    if text not in ("little", "big"):
        raise WeightsFormatError(f"{path}: byteorder entry says {text!r}, expected "
                                 "'little' or 'big'")
    return "<" if text == "little" else ">"


def _read_storage(zf: zipfile.ZipFile, name: str, nbytes: int, path) -> np.ndarray:
    """The bytes of storage entry ``name``, checked to be exactly ``nbytes`` long."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise WeightsFormatError(f"{path}: storage entry {name!r} is missing") from None
    check_zip_entry(info, path)
    if info.file_size != nbytes:
        raise WeightsFormatError(
            f"{path}: storage entry {name!r} holds {info.file_size} bytes, the pickle "
            f"says {nbytes}"
        )
    if info.compress_type == zipfile.ZIP_STORED:
        return _read_stored(zf, info, path)
    return np.frombuffer(read_zip_entry(zf, info, path), dtype=np.uint8)  # (nbytes,)


def _read_stored(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path) -> np.ndarray:
    """Read an uncompressed entry straight into a fresh writable buffer, CRC checked.

    One copy instead of zipfile's two (bytes, then an array), so a tensor that is its
    whole storage can use the buffer as is.
    """
    fp: Any = zf.fp  # the archive's open file (zipfile types it IO[bytes] | None)
    fp.seek(0, os.SEEK_END)
    if info.file_size != info.compress_size or info.file_size > fp.tell():
        raise WeightsFormatError(
            f"{path}: zip entry {info.filename!r} claims {info.file_size} bytes stored in "
            f"{info.compress_size}, in a file of {fp.tell()} bytes; the file is corrupt"
        )
    fp.seek(info.header_offset)
    local = fp.read(30)  # the local file header; name and extra field lengths at 26..30
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise WeightsFormatError(f"{path}: zip entry {info.filename!r}: bad local header")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    fp.seek(info.header_offset + 30 + name_len + extra_len)
    buffer = np.empty(info.file_size, dtype=np.uint8)  # (nbytes,)
    if fp.readinto(buffer) != info.file_size:
        raise WeightsFormatError(f"{path}: file ends inside zip entry {info.filename!r}")
    if zlib.crc32(buffer.data) != info.CRC:
        raise WeightsFormatError(f"{path}: zip entry {info.filename!r}: Bad CRC-32; the "
                                 "file is corrupt")
    return buffer
