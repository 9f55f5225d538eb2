"""What every weight-file reader and writer shares: errors, dtypes, size checks."""

from __future__ import annotations

import contextlib
import math
import os
import struct
import zipfile
import zlib

import numpy as np

# Copying tensors out of a ``torch.save`` file is budgeted per file: at most
# COPY_RATIO times the file's size, plus COPY_ALLOWANCE bytes. Views that repeat their
# storage (stride 0, from ``expand``) or one storage referenced many times could
# otherwise turn a 1 KB file into gigabytes. Real state dicts stay well inside: a copy
# is at most 2x its bytes (bfloat16 widened), tied weights add one more.
COPY_RATIO = 8
COPY_ALLOWANCE = 32 << 20

# Deflated .npz entries together may inflate to at most INFLATE_RATIO times the file's
# size plus INFLATE_ALLOWANCE bytes, and each to no more than it declares (zipfile stops
# there). np.savez_compressed of real weights shrinks far less than this; torch.save
# never compresses, and torch.load refuses compressed entries, as nplstm does for .pt.
INFLATE_RATIO = 64
INFLATE_ALLOWANCE = 64 << 20

# Deflate cannot compress better than about 1032:1; a zip entry that claims more lies.
_MAX_DEFLATE_RATIO = 1100

# The dtypes save_weights writes (both .safetensors and .npz).
SAVABLE_DTYPES = tuple(
    np.dtype(name)
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                 "uint64", "float16", "float32", "float64")
)


def quote(value, limit: int = 60) -> str:
    """A short description of file data for an error message, never a full repr."""
    if isinstance(value, (str, bytes, bytearray)):
        text = repr(value[:limit])
        return text + (f"... ({len(value)} long)" if len(value) > limit else "")
    if isinstance(value, int) and not isinstance(value, bool):
        return repr(value) if value.bit_length() <= 64 else f"an int of {value.bit_length()} bits"
    if isinstance(value, (float, complex, bool, type(None))):
        return repr(value)
    if isinstance(value, (tuple, list, dict, set, frozenset)):
        kind = "tuple" if isinstance(value, tuple) else type(value).__name__
        return f"a {kind} of {len(value)} items"
    return f"a {type(value).__name__}"


class WeightsFormatError(ValueError):
    """A weight file is malformed, truncated or uses a feature nplstm does not read."""


class UnsafeWeightsError(WeightsFormatError):
    """A pickle asked for a global outside the state-dict allowlist; nothing was run."""


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 stored as ``uint16`` bit patterns to float32, exactly.

    bfloat16 is the top half of a float32, so shifting the bits left by 16 gives the
    same number (NaN payloads and infinities included).
    """
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def native(array: np.ndarray) -> np.ndarray:
    """``array`` in native byte order (a copy only when it was not)."""
    if array.dtype.byteorder in ("=", "|") or array.dtype.isnative:
        return array
    return array.astype(array.dtype.newbyteorder("="))


def check_shape(shape, what: str, *, sized: bool = True) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of ints >= 0, or raise naming ``what``.

    With ``sized`` (a shape, not strides), the product of its non-zero dimensions times
    the widest itemsize (16) must fit NumPy's index type, as ``np.empty`` requires.
    """
    if not isinstance(shape, (tuple, list)):
        raise WeightsFormatError(f"{what}: shape must be a list of ints, got "
                                 f"{type(shape).__name__}")
    if len(shape) > 64:
        raise WeightsFormatError(f"{what}: {len(shape)} dimensions; numpy allows at most 64")
    for n in shape:
        if not is_int(n) or n < 0 or n > _INTP_MAX:
            raise WeightsFormatError(f"{what}: shape must hold ints >= 0 (below 2**63), got "
                                     f"{_short(shape)}")
    if sized and math.prod(int(n) for n in shape if n) * 16 > _INTP_MAX:
        raise WeightsFormatError(f"{what}: shape {_short(shape)} is too large for any array")
    return tuple(int(n) for n in shape)


def _short(shape) -> str:
    """A shape for a message: at most 8 dimensions shown."""
    text = ", ".join(str(n) if is_int(n) else type(n).__name__ for n in list(shape)[:8])
    return f"({text}{', ...' if len(shape) > 8 else ''})"


_INTP_MAX = int(np.iinfo(np.intp).max)


def is_int(value) -> bool:
    """True for a Python or NumPy integer that is not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def numel(shape: tuple[int, ...]) -> int:
    """Number of elements of ``shape`` (Python ints: no overflow)."""
    return math.prod(shape)


def check_zip_entry(info: zipfile.ZipInfo, path, file_bytes: int | None = None) -> None:
    """Refuse a zip entry whose declared sizes are impossible (a zip bomb, a lie).

    ``file_bytes``: the archive's size; no entry can hold more compressed bytes.
    """
    if file_bytes is not None and info.compress_size > file_bytes:
        raise WeightsFormatError(
            f"{path}: zip entry {quote(info.filename)} claims {info.compress_size} bytes stored "
            f"in a file of {file_bytes} bytes; the file is corrupt or truncated"
        )
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size:
            raise WeightsFormatError(
                f"{path}: zip entry {quote(info.filename)} claims {info.file_size} bytes stored "
                f"in {info.compress_size}; the file is corrupt"
            )
        return
    if info.file_size > _MAX_DEFLATE_RATIO * info.compress_size + 1024:
        raise WeightsFormatError(
            f"{path}: zip entry {quote(info.filename)} claims {info.file_size} bytes from "
            f"{info.compress_size} compressed bytes; the file is corrupt or hostile"
        )


def check_zip_archive(zf: zipfile.ZipFile, path, file_bytes: int) -> None:
    """Refuse duplicate entry names, impossible entries, and too much inflation.

    With two entries of one name, ``zipfile`` silently returns the last: a file could
    show one set of weights to one reader and another to nplstm.
    """
    infos = zf.infolist()
    seen, duplicates = set(), []
    for info in infos:
        if info.filename in seen and info.filename not in duplicates:
            duplicates.append(info.filename)
        seen.add(info.filename)
        check_zip_entry(info, path, file_bytes)
    if duplicates:
        raise WeightsFormatError(
            f"{path}: the zip archive holds several entries named "
            f"{', '.join(map(repr, duplicates[:5]))}; the file is corrupt or hostile"
        )
    inflated = sum(i.file_size for i in infos if i.compress_type != zipfile.ZIP_STORED)
    limit = INFLATE_RATIO * file_bytes + INFLATE_ALLOWANCE
    if inflated > limit:
        raise WeightsFormatError(
            f"{path}: compressed zip entries claim {inflated} bytes from a {file_bytes}-byte "
            f"file (at most {INFLATE_RATIO}x its size plus {INFLATE_ALLOWANCE} bytes); "
            "refusing a likely zip bomb"
        )


def read_zip_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path) -> bytes:
    """The bytes of one checked zip entry, with corrupt data reported as WeightsFormatError.

    zipfile reads at most the entry's compressed size from the file (checked not to
    exceed it) and inflates to at most its declared size.
    """
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as exc:
        raise WeightsFormatError(
            f"{path}: cannot read zip entry {quote(info.filename)}: {exc}"
        ) from exc


# What zipfile raises on a damaged archive, besides BadZipFile: unknown compression or
# version (NotImplementedError), an "encrypted" flag (RuntimeError), a bad UTF-8 name
# (UnicodeDecodeError), short or absurd header fields (struct.error, IndexError, ...).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError,
               ValueError, OverflowError, IndexError, struct.error)


# zipfile builds one ZipInfo (~0.5 KB) per central directory record (>= 46 bytes)
# before anything can be checked; an archive's entry count and central directory size
# are read from its end record first. torch.save writes one entry per storage,
# np.savez one per array: real files hold far fewer.
MAX_ZIP_ENTRIES = 100_000
MAX_ZIP_DIRECTORY = 100 * MAX_ZIP_ENTRIES


@contextlib.contextmanager
def open_zip(path, what: str):
    """Open ``path`` as a zip archive, refusing one with more than MAX_ZIP_ENTRIES
    entries before zipfile reads its central directory; damage as WeightsFormatError."""
    with open(path, "rb") as f, damaged_zip_errors(path, what):
        count, directory = _zip_directory(f)
        if count > MAX_ZIP_ENTRIES or directory > MAX_ZIP_DIRECTORY:
            raise WeightsFormatError(
                f"{path}: the zip archive claims {count} entries in a {directory}-byte "
                f"directory (at most {MAX_ZIP_ENTRIES} entries, {MAX_ZIP_DIRECTORY} bytes)"
            )
        with zipfile.ZipFile(f) as zf:
            yield zf


def _zip_directory(f) -> tuple[int, int]:
    """``(entries, central directory bytes)`` from the end of central directory record
    (zip64 aware; APPNOTE.TXT 4.3.14-16), or zeros when it cannot be found (zipfile
    then reports the damage)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(0, size - (1 << 16) - 22))
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return 0, 0
    count, directory = struct.unpack_from("<HI", tail, at + 10)
    locator = at - 20
    if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        (offset,) = struct.unpack_from("<Q", tail, locator + 8)
        f.seek(min(offset, size))
        record = f.read(56)
        if len(record) == 56 and record[:4] == b"PK\x06\x06":
            count, directory = struct.unpack_from("<QQ", record, 32)
    return count, directory


@contextlib.contextmanager
def damaged_zip_errors(path, what: str):
    """Report zipfile's errors on a damaged archive as WeightsFormatError."""
    try:
        yield
    except WeightsFormatError:
        raise
    except _ZIP_ERRORS as exc:
        raise WeightsFormatError(f"{path}: {what} ({type(exc).__name__}: {exc}); the file "
                                 "may be truncated or damaged") from exc
