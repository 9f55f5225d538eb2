"""nplstm's own pickle interpreter: the opcodes ``torch.save`` writes, plain data only.

CPython's ``pickle.Unpickler`` is a general object builder: a file can make it
allocate a memo of any size, nest tuples until hashing them overflows the C stack, or
call ``BUILD`` on what ``find_class`` handed back. This interpreter runs only the
opcodes a state_dict or checkpoint needs (protocols 2-5 as ``torch.save`` emits them;
the opcode list and argument formats are CPython's ``pickletools`` documentation) and
builds only dict, list, tuple, set, frozenset, str, bytes, int, float, complex, bool,
None and what the caller's :class:`Resolver` makes of globals and persistent ids. It
keeps no state between loads, and bounds everything a file controls:

* nesting depth of the object built (``MAX_DEPTH``) and of open MARKs (``MAX_MARKS``);
* the object's size as a tree (``MAX_NODES``: a shared object counts each time it
  appears), so no file of a few bytes unfolds into 2**100 values for whoever walks it;
* memo indexes: dense, as every pickler writes them (index <= memo length);
* integers (``MAX_INT_BYTES``), strings and bytes (at most what the file holds);
* containers cannot be changed once they sit inside another one (so the depth and
  size recorded when they were inserted stay true, and no cycle can form); CPython's
  pickler never does so either;
* dict keys and set members: str, bytes, bool, None and ints below 2**61 (whose hashes
  cannot be made to collide) freely; other hashable values (floats, tuples, ...) at most
  ``MAX_OTHER_KEYS`` per file and ``MAX_KEY_SIZE`` nodes each, so neither hashing nor
  hash collisions can cost more than a few million steps;
* work: every opcode consumes at least one byte and does work proportional to what it
  pops, so a load is linear in the pickle's size.

Errors are :class:`~nplstm.io.WeightsFormatError`; file data in messages is quoted
truncated (:func:`quote`).
"""

from __future__ import annotations

import struct
from typing import Any, NoReturn

from ._common import UnsafeWeightsError, WeightsFormatError, quote

MAX_DEPTH = 100
MAX_NODES = 10_000_000
MAX_MARKS = 2 * MAX_DEPTH + 16
MAX_INT_BYTES = 1024
MAX_OTHER_KEYS = 512
MAX_KEY_SIZE = 64
_SMALL_INT = (1 << 61) - 1  # |x| below this: hash(x) == x (save -1), no collisions
_PLAIN_KEYS = (str, bytes, bool, type(None))
_HASHABLE = _PLAIN_KEYS + (int, float, complex)


class PickleEndsError(WeightsFormatError):
    """The pickle runs past the end of the data given (a reader holding only a prefix of
    the file may retry with more)."""


class Resolver:
    """What a pickle's globals and persistent ids mean; subclassed by the torch reader.

    ``find_global`` returns a :class:`Global` or raises (UnsafeWeightsError);
    ``call(glob, args)`` runs an allowed callable on plain ``args``;
    ``persistent(pid)`` resolves a persistent id (a plain value). This base class
    allows none of them: plain data only.
    """

    source = "pickle"

    def find_global(self, module: str, name: str) -> Global:
        raise UnsafeWeightsError(f"{self.source}: refusing global {quote(module)} "
                                 f"{quote(name)} in a pickle of plain data")

    def call(self, glob: Global, args: tuple):  # pragma: no cover - no globals allowed
        raise WeightsFormatError(f"{self.source}: {glob.name} cannot be called")

    def persistent(self, pid):
        raise WeightsFormatError(f"{self.source}: a persistent id in a pickle of plain data")


class Global:
    """A global the resolver allowed. ``value``: the plain value it stands for when
    used as data (e.g. ``'torch.float32'``); ``None`` when it may only be called.
    ``kind``: ``"ordered_dict"`` (a dict BUILD may give metadata to), ``"set"`` or
    ``"frozenset"`` (built here, members checked), else ``None`` (the resolver calls it).
    """

    __slots__ = ("kind", "name", "value")

    def __init__(self, name: str, value=None, kind=None):
        self.name, self.value, self.kind = name, value, kind


class Internal:
    """Base of the resolver's private objects (storages) allowed only as call arguments."""

    __slots__ = ()


class Args(tuple):
    """A tuple holding an :class:`Internal` object: may be called with, never returned."""

    __slots__ = ()


_CONTAINERS = frozenset({list, dict, tuple, set, frozenset, Args})
_MUTABLE = frozenset({list, dict, set})


class Machine:
    """Run one pickle from ``data[start:]``; :meth:`run` returns its value and end."""

    def __init__(self, data, resolver: Resolver, source: str, start: int = 0):
        self.data, self.pos, self.resolver, self.source = memoryview(data), start, resolver, source
        self.stack: list = []
        self.marks: list[list] = []
        self.memo: list = []
        self._depth: dict[int, int] = {}  # id -> depth, for containers deeper than 1
        self._nested: dict[int, int] = {}  # id -> nodes inside its container children
        self._frozen: set[int] = set()  # ids of mutable containers inside another one
        self._ordered: set[int] = set()  # ids of dicts made by OrderedDict()
        self._keep: list = []  # keeps every object whose id is recorded above alive
        self._other_keys = 0
        self.result: Any = None  # the pickle's value, set by STOP

    # ---- reading --------------------------------------------------------------------

    def fail(self, message: str) -> NoReturn:
        raise WeightsFormatError(f"{self.source}: {message}")

    def fail_at_end(self, message: str):
        raise PickleEndsError(f"{self.source}: {message}")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            self.fail_at_end(f"pickle ends inside an opcode argument at byte {self.pos} "
                      f"(needs {n} bytes, {len(self.data) - self.pos} left)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def line(self) -> str:
        end = bytes(self.data[self.pos:self.pos + 256]).find(b"\n")
        if end < 0:
            fail = self.fail_at_end if len(self.data) - self.pos < 256 else self.fail
            fail(f"unterminated text argument at byte {self.pos}")
        text = bytes(self.take(end + 1)[:-1])
        try:
            return text.decode("ascii")
        except UnicodeDecodeError:
            self.fail(f"non-ASCII global name {quote(text)}")

    def text(self, n: int) -> str:
        raw = self.take(n)
        try:
            return str(raw, "utf-8")  # strict: no lone surrogates (they cannot be saved)
        except UnicodeDecodeError as exc:
            self.fail(f"string at byte {self.pos - n} is not UTF-8 ({exc.reason})")

    def long(self, n: int) -> int:
        if n > MAX_INT_BYTES:
            self.fail(f"an integer of {n} bytes (at most {MAX_INT_BYTES})")
        return int.from_bytes(self.take(n), "little", signed=True)

    # ---- the stack ------------------------------------------------------------------

    def push(self, value) -> None:
        self.stack.append(value)

    def pop(self):
        if not self.stack:
            self.fail(f"stack underflow at byte {self.pos - 1}")
        return self.stack.pop()

    def top(self):
        if not self.stack:
            self.fail(f"stack underflow at byte {self.pos - 1}")
        return self.stack[-1]

    def mark(self) -> None:
        if len(self.marks) >= MAX_MARKS:
            self.fail(f"more than {MAX_MARKS} open MARKs: nesting too deep")
        self.marks.append(self.stack)
        self.stack = []

    def pop_mark(self) -> list:
        if not self.marks:
            self.fail(f"no MARK before the opcode at byte {self.pos - 1}")
        items, self.stack = self.stack, self.marks.pop()
        return items

    # ---- containers -----------------------------------------------------------------

    def value(self, x):
        """``x`` as it may sit inside a container or be returned."""
        kind = type(x)
        if kind is Global:
            if x.value is None:
                self.fail(f"global {x.name} used as a value; it may only be called")
            return x.value
        if kind is Args or isinstance(x, Internal):
            self.fail("a storage outside a tensor; torch.save never writes one")
        return x

    def record(self, parent, children) -> None:
        """Account for ``children`` now inside ``parent``: depth, nodes, freezing.

        A container's depth and node count (as a tree: shared objects counted each
        time they appear) are exact, because containers cannot change once inside
        another; only containers holding containers are recorded.
        """
        deepest, nested = 0, 0
        for child in children:
            if type(child) in _CONTAINERS:
                if child is parent:
                    self.fail("a container placed inside itself; torch.save writes no cycles")
                deepest = max(deepest, self._depth.get(id(child), 1))
                nested += self.nodes(child)
                if type(child) in _MUTABLE and id(child) not in self._frozen:
                    self._frozen.add(id(child))
                    self._keep.append(child)
        if deepest:
            depth = max(self._depth.get(id(parent), 1), deepest + 1)
            if depth > MAX_DEPTH:
                self.fail(f"containers nested more than {MAX_DEPTH} deep")
            if id(parent) not in self._depth:
                self._keep.append(parent)
            self._depth[id(parent)] = depth
            self._nested[id(parent)] = self._nested.get(id(parent), 0) + nested
            if self.nodes(parent) + len(children) > MAX_NODES:
                self.fail(f"more than {MAX_NODES} values counting every repetition of a "
                          "shared one; torch.save files of real models hold far fewer")

    def nodes(self, container) -> int:
        """The values inside ``container`` at every level, repetitions counted."""
        own = 2 * len(container) if type(container) is dict else len(container)
        return own + self._nested.get(id(container), 0)

    def mutable(self, target, kind, what: str):
        if type(target) is not kind:
            self.fail(f"{what} on {quote(target)}, expected a {kind.__name__}")
        if id(target) in self._frozen:
            self.fail(f"{what} on a {kind.__name__} already inside another container; "
                      "torch.save never writes that")
        return target

    def key(self, k):
        """Check a dict key or set member: hashable, and cheap to hash and compare."""
        kind = type(k)
        if kind in _PLAIN_KEYS or (kind is int and -_SMALL_INT < k < _SMALL_INT):
            return k
        if kind not in (int, float, complex, tuple, frozenset):
            self.fail(f"a dict key or set member of type {kind.__name__} "
                      f"({quote(k)}) cannot be hashed")
        self._other_keys += 1
        if self._other_keys > MAX_OTHER_KEYS:
            self.fail(f"more than {MAX_OTHER_KEYS} dict keys or set members that are not "
                      "strings or small ints")
        if kind in (tuple, frozenset):
            self.small_hashable(k)
        return k

    def small_hashable(self, k) -> None:
        """Walk a tuple/frozenset key: at most MAX_KEY_SIZE nodes, all hashable."""
        todo, nodes = [k], 0
        while todo:
            node = todo.pop()
            nodes += 1
            if nodes > MAX_KEY_SIZE:
                self.fail(f"a {type(k).__name__} dict key or set member of more than "
                          f"{MAX_KEY_SIZE} nodes")
            if type(node) in (tuple, frozenset):
                todo.extend(node)
            elif type(node) not in _HASHABLE:
                self.fail(f"a dict key or set member holding a {type(node).__name__}, "
                          "which cannot be hashed")

    def make_tuple(self, items: list):
        if any(type(i) is Args or isinstance(i, Internal) for i in items):
            if any(type(i) is Args for i in items):
                self.fail("arguments nested inside arguments; torch.save never writes that")
            made: tuple = Args(i if isinstance(i, Internal) else self.value(i) for i in items)
        else:
            made = tuple(self.value(i) for i in items)
        self.record(made, made)
        return made

    def set_items(self, target: dict, items: list) -> None:
        if len(items) % 2:
            self.fail("SETITEMS with an odd number of items")
        keys = [self.key(self.value(k)) for k in items[0::2]]
        values = [self.value(v) for v in items[1::2]]
        self.record(target, keys + values)
        target.update(zip(keys, values))

    def add_items(self, target, items: list) -> None:
        members = [self.key(self.value(i)) for i in items]
        self.record(target, members)
        target.update(members)

    def make_set(self, kind, items):
        """``set(items)`` or ``frozenset(items)`` with every member checked."""
        members = [self.key(self.value(i)) for i in items]
        made = kind(members)
        self.record(made, members)
        return made

    # ---- the run --------------------------------------------------------------------

    def run(self):
        """Execute until STOP; return ``(value, end offset)``."""
        from .pickle_ops import OPCODES as table
        from .pickle_ops import STOP

        data = self.data
        while True:
            if self.pos >= len(data):
                self.fail_at_end(f"pickle ends at byte {self.pos} without STOP")
            code = data[self.pos]
            self.pos += 1
            handler = table.get(code)
            if handler is None:
                self.refuse_opcode(code)
            if handler(self) is STOP:
                break
        return self.result, self.pos

    def refuse_opcode(self, code: int):
        from .pickle_ops import UNSUPPORTED

        name = UNSUPPORTED.get(code)
        if name in ("EXT1", "EXT2", "EXT4"):
            size = {"EXT1": 1, "EXT2": 2, "EXT4": 4}[name]
            number = int.from_bytes(self.take(size), "little")
            raise UnsafeWeightsError(
                f"{self.source}: refusing copyreg extension code {number} ({name}) at byte "
                f"{self.pos - 1 - size}: it names a global that cannot be checked; "
                "torch.save never writes one"
            )
        if name == "INST":
            self.resolver.find_global(self.line(), self.line())  # refuses unsafe names
        what = f"opcode {name}" if name else f"unknown opcode {bytes([code])!r}"
        self.fail(f"not a valid torch.save pickle: {what} at byte {self.pos - 1} is not "
                  "used by torch.save and not read by nplstm")


def run_pickle(data, resolver: Resolver, source: str, start: int = 0):
    """Interpret the pickle at ``data[start:]``; return ``(value, end offset)``."""
    machine = Machine(data, resolver, source, start)
    try:
        return machine.run()
    except RecursionError:  # pragma: no cover - depth is bounded; belt and braces
        machine.fail("nesting too deep")
    except MemoryError:
        machine.fail("out of memory while reading the pickle")
