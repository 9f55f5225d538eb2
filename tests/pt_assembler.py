"""A tiny pickle assembler for hand-made torch.save files (no torch needed).

Fragments are opcode bytes; ``state(**entries)`` wraps them in a pickled dict and
``write_pt`` puts it in a torch.save-style zip. Shared by the io security, hostile-file
and fuzz tests.
"""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np


def value(obj) -> bytes:
    """Opcodes pushing a plain Python value (no memo, so fragments compose)."""
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=2)
    p.fast = True
    p.dump(obj)
    return buf.getvalue()[2:-1]  # drop PROTO and STOP


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def frag(x) -> bytes:
    return x if isinstance(x, bytes) else value(x)


def call(func: bytes, *args) -> bytes:
    """``func(*args)`` via REDUCE; args are opcode bytes or plain values."""
    return func + b"(" + b"".join(frag(a) for a in args) + b"tR"


def storage(key="0", kind="FloatStorage", numel=4, location="cpu", module="torch") -> bytes:
    return b"(" + value("storage") + glob(module, kind) + value(key) + value(location) \
        + value(numel) + b"tQ"


def tensor(stor=None, offset=0, size=(4,), stride=(1,), grad=False, hooks=None) -> bytes:
    """``_rebuild_tensor_v2(...)``; list arguments become tuples, bytes pass as opcodes."""
    hooks = call(glob("collections", "OrderedDict")) if hooks is None else hooks
    size, stride = (tuple(x) if isinstance(x, list) else x for x in (size, stride))
    return call(glob("torch._utils", "_rebuild_tensor_v2"), stor or storage(), offset,
                size, stride, grad, hooks)


def state(**entries) -> bytes:
    """A pickled ``{key: value}``, values given as opcode bytes."""
    body = b"".join(value(k) + frag(v) for k, v in entries.items())
    return b"\x80\x02}(" + body + b"u."


def write_pt(path, pkl: bytes, storages=None, top="archive", byteorder=b"little", skip=()):
    """A torch.save-style zip: ``top/data.pkl``, ``top/data/<key>``, ``top/byteorder``."""
    storages = {"0": np.arange(4, dtype="<f4").tobytes()} if storages is None else storages
    entries = {"data.pkl": pkl, "byteorder": byteorder, "version": b"3\n"}
    entries.update({f"data/{k}": v for k, v in storages.items()})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            if name not in skip and data is not None:
                zf.writestr(f"{top}/{name}", data)
    return path


