"""Seeds and mutations for fuzzing the weight readers (tests/test_io_fuzz.py and the
longer benchmarks/fuzz_weights.py).

Seeds are valid files of every format nplstm reads: torch.save zip and legacy (made
with torch when it is installed), safetensors, .npz stored and deflated. A mutation is
a list of edits applied either to the raw bytes or, for zip archives, to one entry's
content before re-zipping it (so CRCs stay right and the pickle or .npy header parser
itself is reached).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

import nplstm.io as nio

# Bytes worth writing: pickle opcodes that build, nest or reference, and edge values.
INTERESTING = b"\x00\x01\x7f\x80\xff(.tu]}\x85\x86\x87\x8c\x8f\x90\x91\x93\x94\x95qrhjcRbQ2"


def seeds() -> dict[str, bytes]:
    """``name -> valid file bytes``; the torch ones only where torch is installed."""
    out = {}
    sd = {"lstm.weight_ih_l0": np.arange(12, dtype=np.float32).reshape(4, 3) / 7,
          "lstm.bias": np.arange(4, dtype=np.float64), "n": np.array([3, 1], np.int64)}
    for suffix in (".safetensors", ".npz"):
        buf = io.BytesIO()
        writer = (nio.safetensors.write_safetensors if suffix == ".safetensors"
                  else nio.npz.write_npz)
        writer(buf, sd)
        out[suffix] = buf.getvalue()
    buf = io.BytesIO()
    np.savez_compressed(buf, **sd)
    out["deflated.npz"] = buf.getvalue()
    out.update(_torch_seeds())
    return out


def _torch_seeds() -> dict[str, bytes]:
    try:
        import torch
    except ImportError:  # pragma: no cover - CI installs torch
        return {}
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 2)
    shared = torch.arange(6.0)
    ckpt = {"model": lstm.state_dict(), "epoch": 3, "size": torch.Size([2, 3]),
            "dev": torch.device("cpu"), "misc": [1.5, (2, "a"), {"k": None}, b"\x00"],
            "view": shared[1:4], "whole": shared, "half": torch.ones(2, dtype=torch.float16),
            "opt": {"state": {0: {"step": torch.tensor(1.0)}}, "param_groups": [{"lr": 0.1}]}}
    out = {}
    for name, new in (("zip.pt", True), ("legacy.pt", False)):
        buf = io.BytesIO()
        torch.save(ckpt, buf, _use_new_zipfile_serialization=new)
        out[name] = buf.getvalue()
    return out


def apply_edits(blob: bytes, edits) -> bytes:
    """Apply ``(kind, where, value)`` edits; ``where`` in [0, 1) scales to the length."""
    data = bytearray(blob)
    for kind, where, value in edits:
        at = int(where * len(data)) if data else 0
        if kind == "set" and data:
            data[at] = value
        elif kind == "opcode" and data:
            data[at] = INTERESTING[value % len(INTERESTING)]
        elif kind == "insert":
            data[at:at] = bytes([value]) * (1 + value % 8)
        elif kind == "delete":
            del data[at:at + 1 + value % 16]
        elif kind == "repeat":
            data[at:at] = data[at:at + 1 + value % 32] * (1 + value % 5)
        elif kind == "cut":
            del data[at:]
    return bytes(data)


def mutate(blob: bytes, edits, inside: float | None) -> bytes:
    """Edit ``blob``; for a zip with ``inside`` set, edit that entry and re-zip."""
    if inside is None or blob[:2] != b"PK":
        return apply_edits(blob, edits)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        infos = zf.infolist()
        contents = [zf.read(i) for i in infos]
    target = min(int(inside * len(infos)), len(infos) - 1)
    contents[target] = apply_edits(contents[target], edits)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for info, content in zip(infos, contents):
            zf.writestr(info, content)
    return out.getvalue()


def load(path) -> str:
    """``"loaded"`` or ``"refused"``; any other exception propagates."""
    try:
        obj = nio.load_checkpoint(path)
    except nio.WeightsFormatError:
        return "refused"
    try:
        nio.find_state_dict(obj)
    except nio.WeightsFormatError:
        return "refused"
    return "loaded"
