"""Read and write ``.npz`` state dicts: one ``<key>.npy`` entry per tensor.

Reading does not call ``np.load`` on the archive: each ``.npy`` header is parsed and
checked against the bytes its entry really holds before anything is allocated (a
forged header claiming a 10**12-element array would otherwise make NumPy allocate it),
and object arrays are refused -- pickles never load.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from ._common import (
    WeightsFormatError,
    check_shape,
    check_zip_archive,
    damaged_zip_errors,
    native,
    numel,
    read_zip_entry,
)


def read_npz(path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (``np.savez`` or ``np.savez_compressed``)."""
    with open(path, "rb") as f, damaged_zip_errors(path, "cannot read the .npz (zip) archive"), \
            zipfile.ZipFile(f) as zf:
        check_zip_archive(zf, path)
        return {_key(info, path): _read_entry(zf, info, path) for info in zf.infolist()
                if not info.filename.endswith("/")}


def _key(info: zipfile.ZipInfo, path) -> str:
    """``'lstm.weight_ih_l0.npy'`` -> ``'lstm.weight_ih_l0'``."""
    if not info.filename.endswith(".npy"):
        raise WeightsFormatError(f"{path}: entry {info.filename!r} is not a .npy array")
    return info.filename[: -len(".npy")]


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path) -> np.ndarray:
    """Parse one ``.npy`` entry's header, check it, then read its data."""
    what = f"{path}: array {_key(info, path)!r}"
    data = read_zip_entry(zf, info, path)
    shape, fortran, dtype, offset = _parse_header(data, what)
    nbytes = numel(shape) * dtype.itemsize
    if len(data) - offset != nbytes:
        raise WeightsFormatError(f"{what}: header says shape {shape} of {dtype} "
                                 f"({nbytes} bytes), the entry holds {len(data) - offset}")
    flat = np.frombuffer(data, dtype=dtype, count=numel(shape), offset=offset)
    if fortran:
        array = flat.reshape(shape[::-1]).T  # (shape) in Fortran order
    else:
        array = flat.reshape(shape)
    return native(np.array(array, order="C"))  # a writable, C-ordered copy


def _parse_header(data: bytes, what: str):
    """``(shape, fortran_order, dtype, data_offset)`` of one ``.npy`` blob."""
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as exc:
        raise WeightsFormatError(f"{what}: bad .npy header: {exc}") from exc
    if dtype.hasobject or dtype.kind not in "biufc":
        raise WeightsFormatError(f"{what}: dtype {dtype} is not numeric; object arrays "
                                 "are refused (they would need pickle)")
    return check_shape(shape, what), bool(fortran), dtype, fp.tell()


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
