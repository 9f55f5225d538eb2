"""Tell a weight file's format from its content; the suffix only breaks ties.

* ``PK\\x03\\x04`` / ``PK\\x05\\x06``: a zip archive. With a ``<folder>/data.pkl``
  entry it is a ``torch.save`` file (PyTorch >= 1.6); otherwise an ``.npz``
  (``numpy.lib.format``), unless the suffix says torch (then its error explains).
* a pickle (``\\x80``) holding torch's magic number 0x1950a86a20f9469cfc6c: a legacy
  (pre-1.6) ``torch.save`` file (torch/serialization.py ``_legacy_save``).
* 8 bytes of little-endian header length N <= the file, then ``{``: safetensors.
"""

from __future__ import annotations

import os
import stat
import struct

from ._common import WeightsFormatError, open_zip
from .pickle_vm import quote
from .torch_legacy import looks_legacy

# .bin: Hugging Face's pytorch_model.bin; .ckpt: Lightning checkpoints (both torch.save).
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar", ".pkl")

# A file of no known content goes to the reader its suffix names, for a detailed error.
_BY_SUFFIX = {".safetensors": "safetensors", ".npz": "npz"}

_HINTS = (
    (b"\x89HDF", "an HDF5 file (a Keras .h5 model? use nplstm.from_keras)"),
    (b"\x93NUMPY", "a single .npy array (nplstm reads .npz archives of them)"),
    (b"\x1f\x8b", "a gzip file (decompress it first)"),
)


def detect(path) -> str:
    """``"torch-zip"``, ``"torch-legacy"``, ``"safetensors"`` or ``"npz"``.

    Raises:
        WeightsFormatError: empty, not a regular file (a FIFO or device, which a reader
            could wait on or read forever), or none of these formats; the message says
            what the first bytes looked like.
        OSError: missing, a directory, unreadable.
    """
    _check_regular(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise WeightsFormatError(f"{path}: the file is empty, too short for any weight file")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _zip_kind(path, size)
    if looks_legacy(head):
        return "torch-legacy"
    if len(head) > 8 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= size - 8:
        return "safetensors"
    suffix = os.path.splitext(os.fsdecode(path))[1].lower()
    if suffix in _BY_SUFFIX:  # its own reader says what is wrong in detail
        return _BY_SUFFIX[suffix]
    looked = next((hint for magic, hint in _HINTS if head.startswith(magic)), None)
    if looked is None and head[:1] == b"\x80":
        looked = "a pickle without torch's magic number"
    what = ("a torch.save zip archive or legacy torch.save file" if suffix in TORCH_SUFFIXES
            else "a weight file nplstm reads")
    raise WeightsFormatError(
        f"{path}: not {what}: it starts with {quote(head[:16])}"
        + (f", {looked}" if looked else "")
        + "; expected a torch.save file (zip 'PK' or legacy pickle), safetensors or .npz"
    )


_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _check_regular(path) -> None:
    """Refuse a FIFO, device or socket before opening it: opening a FIFO blocks until a
    writer comes, and a device has no size to bound reads by. (Symlinks are followed;
    directories fail with the OS's IsADirectoryError when opened.)"""
    mode = os.stat(path).st_mode
    for test, what in _SPECIAL:
        if test(mode):
            raise WeightsFormatError(f"{path}: {what}, not a regular file; nplstm reads "
                                     "weight files it can seek in and size")


def _zip_kind(path, size: int) -> str:
    """``"torch-zip"`` for an archive with ``data.pkl``, else ``"npz"`` (suffix ties)."""
    with open_zip(path, "cannot read the zip archive") as zf:
        names = zf.namelist()
    if any(n.endswith("/data.pkl") for n in names[:100_000]):
        return "torch-zip"
    suffix = os.path.splitext(os.fsdecode(path))[1].lower()
    return "torch-zip" if suffix in TORCH_SUFFIXES else "npz"
