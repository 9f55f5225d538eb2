"""Read ``torch.save`` files (.pt/.pth) without torch.

Since PyTorch 1.6, ``torch.save`` writes a zip archive::

    <name>/data.pkl        the pickled object; tensors point at storages by key
    <name>/data/<key>      raw bytes of each storage (uncompressed)
    <name>/byteorder       "little" or "big" (absent in old files: little)
    <name>/version, ...    bookkeeping nplstm does not need

``<name>`` is the file's stem at save time, so any single top folder is accepted.
The pickle is run by nplstm's own interpreter (:mod:`nplstm.io.pickle_vm`) with the
globals of :mod:`nplstm.io.torch_pickle`; every other global is refused. Legacy
(pre-1.6) files are read by :mod:`nplstm.io.torch_legacy`.
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
    open_zip,
    read_zip_entry,
)
from .pickle_vm import quote
from .torch_pickle import unpickle
from .torch_tensor import CopyBudget


def read_pt(path) -> object:
    """The object ``torch.save`` wrote to ``path``, every tensor a NumPy array.

    Tensors come back as C-contiguous arrays in native byte order, none sharing memory
    with another (views that shared a storage are copied); bfloat16 is widened to
    float32 exactly; tensors saved from a GPU are read from their bytes (the device tag
    is kept only as a string). Everything else comes back as plain Python values (see
    :mod:`nplstm.io.torch_pickle`).

    Raises:
        WeightsFormatError: the file is not a readable zip-format ``torch.save`` file,
            or an entry it reads is compressed (``torch.load`` refuses those too).
        UnsafeWeightsError: the pickle names a global outside the allowlist.
    """
    size = os.path.getsize(path)
    with open_zip(path, "cannot read the zip archive") as zf:
        return _read_archive(zf, path, size)


def _read_archive(zf: zipfile.ZipFile, path, size: int) -> object:
    """Find ``<top>/data.pkl``, then unpickle it with storages read on demand."""
    check_zip_archive(zf, path, size)
    top = _top_folder(zf, path)
    pickled = _read_small(zf, f"{top}/data.pkl", path)
    byteorder = _byteorder(zf, top, path)

    def read_storage(key: str, nbytes: int) -> np.ndarray:
        return _read_storage(zf, f"{top}/data/{key}", nbytes, path)

    obj, _, _ = unpickle(pickled, read_storage, byteorder, str(path), CopyBudget(size))
    return obj


def _stored(info: zipfile.ZipInfo, path) -> zipfile.ZipInfo:
    """``info``, which must be uncompressed: torch.save never compresses, and
    torch.load refuses compressed entries (caffe2's PyTorchStreamReader)."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise WeightsFormatError(
            f"{path}: zip entry {quote(info.filename)} is compressed (method "
            f"{info.compress_type}); torch.save never compresses and torch.load refuses "
            "compressed entries. Unzip and re-zip it with 'zip -0', or load and re-save it"
        )
    return info


def _read_small(zf: zipfile.ZipFile, name: str, path) -> bytes:
    """An uncompressed bookkeeping entry (data.pkl, byteorder), checked."""
    return read_zip_entry(zf, _stored(zf.getinfo(name), path), path)


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
            f"(entries: {', '.join(quote(n) for n in names[:5]) or 'none'})"
        )
    raise WeightsFormatError(f"{path}: several data.pkl folders: "
                             f"{', '.join(quote(t) for t in tops[:5])}")


def _byteorder(zf: zipfile.ZipFile, top: str, path) -> str:
    """``'<'`` or ``'>'`` from the ``byteorder`` entry (little when absent)."""
    try:
        info = zf.getinfo(f"{top}/byteorder")
    except KeyError:
        return "<"
    text = read_zip_entry(zf, _stored(info, path), path).decode("ascii", "replace").strip()
    if text not in ("little", "big"):
        raise WeightsFormatError(f"{path}: byteorder entry says {quote(text)}, expected "
                                 "'little' or 'big'")
    return "<" if text == "little" else ">"


def _read_storage(zf: zipfile.ZipFile, name: str, nbytes: int, path) -> np.ndarray:
    """The bytes of storage entry ``name``, checked to be exactly ``nbytes`` long."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise WeightsFormatError(f"{path}: storage entry {quote(name)} is missing") from None
    _stored(info, path)
    if info.file_size != nbytes:
        raise WeightsFormatError(
            f"{path}: storage entry {quote(name)} holds {info.file_size} bytes, the pickle "
            f"says {nbytes}"
        )
    return _read_stored(zf, info, path)


_CHUNK = 1 << 20


def _read_stored(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path) -> np.ndarray:
    """Read an uncompressed entry straight into a fresh writable buffer, CRC checked.

    One copy instead of zipfile's two (bytes, then an array), so a tensor that is its
    whole storage can use the buffer as is.
    """
    fp: Any = zf.fp  # the archive's open file (zipfile types it IO[bytes] | None)
    fp.seek(0, os.SEEK_END)
    if info.file_size != info.compress_size or info.file_size > fp.tell():
        raise WeightsFormatError(
            f"{path}: zip entry {quote(info.filename)} claims {info.file_size} bytes stored in "
            f"{info.compress_size}, in a file of {fp.tell()} bytes; the file is corrupt"
        )
    fp.seek(info.header_offset)
    local = fp.read(30)  # the local file header; name and extra field lengths at 26..30
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise WeightsFormatError(f"{path}: zip entry {quote(info.filename)}: bad local header")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    fp.seek(info.header_offset + 30 + name_len + extra_len)
    buffer = np.empty(info.file_size, dtype=np.uint8)  # (nbytes,)
    crc = 0
    for start in range(0, info.file_size, _CHUNK):  # checksum each chunk while in cache
        chunk = buffer[start:start + _CHUNK]
        if fp.readinto(chunk) != chunk.size:
            raise WeightsFormatError(f"{path}: file ends inside zip entry "
                                     f"{quote(info.filename)}")
        crc = zlib.crc32(chunk.data, crc)
    if crc != info.CRC:
        raise WeightsFormatError(f"{path}: zip entry {quote(info.filename)}: Bad CRC-32; the "
                                 "file is corrupt")
    return buffer
