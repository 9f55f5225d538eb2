"""Read legacy (pre-1.6) ``torch.save`` files without torch.

Until PyTorch 1.6, and later with ``_use_new_zipfile_serialization=False``,
``torch.save`` wrote five things one after another (torch/serialization.py,
``_legacy_save``/``_legacy_load``)::

    pickle   the magic number 0x1950a86a20f9469cfc6c
    pickle   the protocol version, 1001
    pickle   sys_info: {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}
    pickle   the object; storages are persistent ids
             ("storage", FloatStorage, key, location, numel, view_or_None)
    pickle   the list of storage keys, in the order their bytes follow
    for each key: numel (int64, little-endian), then numel * element size bytes
             (little-endian: torch swaps on big-endian machines)

Element sizes come from the storage types in the object pickle, so the pickle runs
twice: a dry run that reads nothing learns each storage's element size and lays the
storages out; the second run rebuilds the tensors. Both runs are bounded like the zip
format's (:mod:`nplstm.io.pickle_vm`).
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ._common import WeightsFormatError
from .pickle_vm import PickleEndsError, Resolver, quote, run_pickle
from .torch_pickle import unpickle
from .torch_tensor import CopyBudget

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# The magic number as little-endian bytes: a legacy file holds them near its start.
MAGIC_BYTES = MAGIC_NUMBER.to_bytes(10, "little")


def looks_legacy(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) starts a legacy ``torch.save`` file."""
    return head[:1] == b"\x80" and MAGIC_BYTES in head[:32]


def read_legacy(path) -> object:
    """The object a legacy ``torch.save`` wrote to ``path``, tensors as NumPy arrays.

    Same results and guarantees as :func:`nplstm.io.torch_pt.read_pt`; storage views
    (the legacy format's 6th persistent-id item) are read as runs of their storage.
    The pickles are read into memory (a prefix of the file, grown until they fit), never
    memory-mapped: a file truncated while it is read must not crash the process (SIGBUS).

    Raises:
        WeightsFormatError: a header pickle is not what torch writes, the storages do
            not match the pickle, or the file is truncated.
        UnsafeWeightsError: the pickle names a global outside the allowlist.
    """
    size = os.path.getsize(path)
    source = f"{path} [legacy (pre-1.6) torch.save]"
    with open(path, "rb") as f:
        if size == 0:
            raise WeightsFormatError(f"{path}: the file is empty")
        prefix = min(size, _FIRST_READ)
        while True:
            f.seek(0)
            data = f.read(prefix)
            try:
                return _read(data, f, size, source)
            except PickleEndsError:
                if len(data) < prefix or prefix >= size:  # the file itself ends there
                    raise
                prefix = min(size, 4 * prefix)


# The pickles of a legacy file are read from its first bytes: this many at first, four
# times more each time they run past them (so at most ~1.33x the pickles' size is read).
_FIRST_READ = 1 << 20


def _read(data: bytes, f, size: int, source: str):
    start = _check_header(data, source)
    budget = CopyBudget(size)
    _, end, dry = unpickle(data, _no_storage, "<", source, budget, start, dry=True)
    keys, end = run_pickle(data, _Plain(source), source, end)
    if type(keys) is not list or not all(type(k) is str for k in keys):
        raise WeightsFormatError(f"{source}: the storage key list is {quote(keys)}, "
                                 "expected a list of strings")
    layout = _layout(f, keys, dry.itemsizes, end, size, source)

    def read_storage(key: str, nbytes: int) -> np.ndarray:
        return _read_storage(f, layout, key, nbytes, source)

    obj, _, _ = unpickle(data, read_storage, "<", source, budget, start)
    return obj


class _Plain(Resolver):
    """Plain data only (the header pickles and the key list)."""

    def __init__(self, source: str):
        self.source = source


def _no_storage(key, nbytes):  # pragma: no cover - the dry run reads nothing
    raise AssertionError("the dry run reads no storage")


def _check_header(data: bytes, source: str) -> int:
    """Run the magic number, protocol and sys_info pickles; return where the object starts."""
    plain = _Plain(source)
    magic, end = run_pickle(data, plain, source, 0)
    if magic != MAGIC_NUMBER:
        raise WeightsFormatError(f"{source}: not a legacy torch.save file (magic number "
                                 f"{quote(magic)})")
    version, end = run_pickle(data, plain, source, end)
    if version != PROTOCOL_VERSION:
        raise WeightsFormatError(f"{source}: legacy torch.save protocol {quote(version)}; "
                                 f"nplstm reads {PROTOCOL_VERSION}")
    info, end = run_pickle(data, plain, source, end)
    if type(info) is not dict or info.get("little_endian") is not True:
        raise WeightsFormatError(f"{source}: legacy sys_info {quote(info)} is not a dict "
                                 "with little_endian=True (big-endian files are not read)")
    return end


def _layout(f, keys, itemsizes, pos: int, size: int, source: str) -> dict:
    """``key -> (offset, nbytes)`` of each storage's bytes, checked against the file."""
    layout = {}
    for key in keys:
        if key in layout or key not in itemsizes:
            why = "twice" if key in layout else "but the pickle never uses it"
            raise WeightsFormatError(f"{source}: storage {quote(key)} is listed {why}")
        f.seek(pos)
        head = f.read(8)
        if pos + 8 > size or len(head) < 8:
            raise WeightsFormatError(f"{source}: the file ends before storage {quote(key)}")
        (count,) = struct.unpack("<q", head)
        nbytes = count * itemsizes[key]
        if count < 0 or pos + 8 + nbytes > size:
            raise WeightsFormatError(
                f"{source}: storage {quote(key)} claims {count} elements at byte {pos}, "
                f"past the end of the {size}-byte file (truncated?)"
            )
        layout[key] = (pos + 8, nbytes)
        pos += 8 + nbytes
    return layout


def _read_storage(f, layout: dict, key: str, nbytes: int, source: str) -> np.ndarray:
    """The bytes of storage ``key`` into a fresh writable buffer, checked to be ``nbytes``."""
    if key not in layout:
        raise WeightsFormatError(f"{source}: storage {quote(key)} is not in the key list")
    offset, stored = layout[key]
    if stored != nbytes:
        raise WeightsFormatError(f"{source}: storage {quote(key)} holds {stored} bytes, the "
                                 f"pickle says {nbytes}")
    buffer = np.empty(nbytes, dtype=np.uint8)  # (nbytes,)
    f.seek(offset)
    if f.readinto(buffer) != nbytes:
        raise WeightsFormatError(f"{source}: the file ends inside storage {quote(key)}")
    return buffer
