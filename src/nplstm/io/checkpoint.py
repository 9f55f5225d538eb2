"""Find the state_dict inside whatever a weight file holds.

A file may hold a state_dict (``{"lstm.weight_ih_l0": array, ...}``) or a training
checkpoint holding one, e.g. ``{"epoch": 3, "model": state_dict, "optimizer": ...}``.
A *dict of tensors* is a non-empty mapping whose keys are all strings and whose values
are all arrays. Paths into nested dicts are written with ``/``: ``"ema/model"``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._common import WeightsFormatError, quote

# When a checkpoint holds several dicts of tensors, these paths win, in this order.
PREFERRED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network")

_MAX_DEPTH = 4

# The search looks at no more than this many dict entries in all. A pickle can put one
# dict under many keys at many levels (its memo makes that cost a few bytes each), so
# each dict is searched once, and a file needing more than this is refused.
MAX_SEARCHED_ENTRIES = 1_000_000


def find_state_dict(obj, key: str | int | None = None, source: str = "weights"):
    """Return ``(path, state_dict)``: where the dict of tensors was and a copy of it.

    Args:
        obj: what :func:`nplstm.io.load_checkpoint` returned.
        key: ``None`` to search; or a ``/``-separated path of dict keys to pick one
            (digits reach an integer key), or an int key.
        source: the file name, for error messages.

    Returns:
        ``path`` is ``None`` when ``obj`` itself is the state_dict.

    Raises:
        WeightsFormatError: ``key`` is missing or not a dict of tensors; or with
            ``key=None``, no dict of tensors, several equally likely ones, or a
            checkpoint too large to search (over ``MAX_SEARCHED_ENTRIES`` entries).
    """
    if key is not None:
        return key, _select(obj, key, source)
    if _is_tensor_dict(obj):
        return None, dict(obj)
    found = _tensor_dicts(obj, source)
    if len(found) == 1:
        (path, state_dict), = found.items()
        return path, dict(state_dict)
    for preferred in PREFERRED_KEYS:
        if preferred in found:
            return preferred, dict(found[preferred])
    if found:
        raise WeightsFormatError(
            f"{source}: several dicts of tensors: {', '.join(map(quote, found))}; "
            "pick one with key=... (nplstm convert --key)"
        )
    raise WeightsFormatError(f"{source}: no dict of tensors found; {describe(obj)}")


def describe(obj, what: str = "the top level") -> str:
    """One line saying what ``obj`` is, listing a dict's keys."""
    if isinstance(obj, Mapping):
        keys = ", ".join(quote(k) for k in list(obj)[:20])
        more = f" (and {len(obj) - 20} more)" if len(obj) > 20 else ""
        return f"{what} is a dict with keys {keys or 'none'}{more}"
    if isinstance(obj, np.ndarray):
        return f"{what} is a single tensor of shape {obj.shape}, not a dict of tensors"
    name = type(obj).__name__
    return f"{what} is {'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _is_tensor_dict(obj) -> bool:
    """True for a non-empty mapping of ``str`` -> ``ndarray``."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())
    )


def _tensor_dicts(obj, source: str) -> dict[str, Mapping]:
    """``{"a/b": dict}`` for every dict of tensors reachable through ``str`` keys.

    Lists and integer-keyed dicts (optimizer state) are not searched. A dict object met
    again under another path is reported once, under its first path in file order, and
    searched again only when met nearer the top (so at most ``_MAX_DEPTH`` times).
    """
    found: dict[str, Mapping] = {}
    depth_seen = {id(obj): 0}  # id -> the smallest depth it was searched from
    tensor_dicts: set[int] = set()
    budget = [MAX_SEARCHED_ENTRIES]

    def charge(entries: int) -> None:
        budget[0] -= entries
        if budget[0] < 0:
            raise WeightsFormatError(
                f"{source}: the checkpoint is too large or too repetitive to search "
                f"(over {MAX_SEARCHED_ENTRIES} dict entries); pick the state_dict "
                "with key=... (nplstm convert --key)"
            )

    def walk(node, path: tuple[str, ...]) -> None:
        if not isinstance(node, Mapping) or len(path) >= _MAX_DEPTH:
            return
        for k, v in node.items():
            charge(1)
            if not isinstance(k, str) or not isinstance(v, Mapping):
                continue
            depth, before = len(path) + 1, depth_seen.get(id(v))
            if before is not None and (before <= depth or id(v) in tensor_dicts):
                continue
            depth_seen[id(v)] = depth
            if before is None:
                charge(len(v))  # _is_tensor_dict may look at every entry
                if _is_tensor_dict(v):
                    tensor_dicts.add(id(v))
                    found["/".join(path + (k,))] = v
                    continue
            walk(v, path + (k,))

    walk(obj, ())
    return found


def _select(obj, key: str | int, source: str) -> dict:
    """Follow ``key`` (``a/b``) into nested dicts; it must end at a dict of tensors.

    An int ``key``, or a part of the path written in digits where the dict has no
    such string key, reaches an integer key (optimizer state: ``"optimizer/state/0"``).
    """
    if isinstance(key, int) and not isinstance(key, bool):
        parts: list = [key]  # an integer key, as optimizer state has
    elif isinstance(key, str) and key:
        parts = key.split("/")
    else:
        raise WeightsFormatError(f"{source}: key must be a non-empty string or an int, "
                                 f"got {key!r}")
    node, walked = obj, list[str]()
    for part in parts:
        if isinstance(node, Mapping) and part not in node and isinstance(part, str) \
                and part.lstrip("-").isdigit() and int(part) in node:
            part = int(part)  # "state/0": the path's text names an integer key
        if not isinstance(node, Mapping) or part not in node:
            where = "/".join(walked) or "the top level"
            raise WeightsFormatError(
                f"{source}: no key {part!r} in {where}; {describe(node, where)}"
            )
        node = node[part]
        walked.append(str(part))
    if isinstance(node, Mapping) and (len(node) == 0 or _is_tensor_dict(node)):
        return dict(node)
    bad = _non_tensor_entries(node)
    raise WeightsFormatError(
        f"{source}: key {key!r} is not a dict of tensors; "
        + (f"entries that are not tensors: {bad}" if bad else describe(node, "it"))
    )


def _non_tensor_entries(node) -> str:
    """The first few keys of a mapping whose values are not arrays, as text."""
    if not isinstance(node, Mapping):
        return ""
    bad = [f"{quote(k)} ({type(v).__name__})" for k, v in node.items()
           if not (isinstance(k, str) and isinstance(v, np.ndarray))]
    return ", ".join(bad[:5])
