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

from ._common import WeightsFormatError

MAX_DEPTH = 100
MAX_MARKS = 2 * MAX_DEPTH + 16
MAX_INT_BYTES = 1024
MAX_OTHER_KEYS = 512
MAX_KEY_SIZE = 64
_SMALL_INT = (1 << 61) - 1  # |x| below this: hash(x) == x (save -1), no collisions
_PLAIN_KEYS = (str, bytes, bool, type(None))
_HASHABLE = _PLAIN_KEYS + (int, float, complex)


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


class Resolver:
    """What a pickle's globals and persistent ids mean; subclassed by the torch reader.

    ``find_global`` returns a :class:`Global` or raises (UnsafeWeightsError);
    ``call(glob, args)`` runs an allowed callable on plain ``args``;
    ``persistent(pid)`` resolves a persistent id (a plain value). This base class
    allows none of them: plain data only.
    """

    source = "pickle"

    def find_global(self, module: str, name: str) -> Global:
        from ._common import UnsafeWeightsError

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


class _Args(tuple):
    """A tuple holding an :class:`Internal` object: may be called with, never returned."""

    __slots__ = ()


class Machine:
    """Run one pickle from ``data[start:]``; :meth:`run` returns its value and end."""

    def __init__(self, data, resolver: Resolver, source: str, start: int = 0):
        self.data, self.pos, self.resolver, self.source = memoryview(data), start, resolver, source
        self.stack: list = []
        self.marks: list[list] = []
        self.memo: list = []
        self._depth: dict[int, int] = {}  # id -> depth, for containers deeper than 1
        self._frozen: set[int] = set()  # ids of mutable containers inside another one
        self._ordered: set[int] = set()  # ids of dicts made by OrderedDict()
        self._keep: list = []  # keeps every object whose id is recorded above alive
        self._other_keys = 0

    # ---- reading --------------------------------------------------------------------

    def fail(self, message: str):
        raise WeightsFormatError(f"{self.source}: {message}")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            self.fail(f"pickle ends inside an opcode argument at byte {self.pos} "
                      f"(needs {n} bytes, {len(self.data) - self.pos} left)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def line(self) -> str:
        end = bytes(self.data[self.pos:self.pos + 256]).find(b"\n")
        if end < 0:
            self.fail(f"unterminated text argument at byte {self.pos}")
        text = bytes(self.take(end + 1)[:-1])
        try:
            return text.decode("ascii")
        except UnicodeDecodeError:
            self.fail(f"non-ASCII global name {quote(text)}")

    def text(self, n: int) -> str:
        raw = self.take(n)
        try:
            return str(raw, "utf-8", "surrogatepass")
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
        if kind is _Args or isinstance(x, Internal):
            self.fail("a storage outside a tensor; torch.save never writes one")
        return x

    def depth(self, x) -> int:
        return self._depth.get(id(x), 1) if type(x) in _CONTAINERS else 0

    def record(self, parent, children) -> None:
        """Account for ``children`` now inside ``parent``: depth, freezing, sizes."""
        deepest = 0
        for child in children:
            if type(child) in _CONTAINERS:
                if child is parent:
                    self.fail("a container placed inside itself; torch.save writes no cycles")
                deepest = max(deepest, self._depth.get(id(child), 1))
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
        if any(type(i) is _Args or isinstance(i, Internal) for i in items):
            if any(type(i) is _Args for i in items):
                self.fail("arguments nested inside arguments; torch.save never writes that")
            made = _Args(i if isinstance(i, Internal) else self.value(i) for i in items)
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
        data, table = self.data, _OPCODES
        while True:
            if self.pos >= len(data):
                self.fail(f"pickle ends at byte {self.pos} without STOP")
            code = data[self.pos]
            self.pos += 1
            handler = table.get(code)
            if handler is None:
                self.refuse_opcode(code)
            if handler(self) is _STOP:
                break
        return self.result, self.pos

    def refuse_opcode(self, code: int):
        from ._common import UnsafeWeightsError

        name = _UNSUPPORTED.get(code)
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


_STOP = object()
_CONTAINERS = frozenset({list, dict, tuple, set, frozenset, _Args})
_MUTABLE = frozenset({list, dict, set})


def _stop(m: Machine):
    if m.marks:
        m.fail("STOP inside an open MARK")
    value = m.value(m.pop())
    if m.stack:
        m.fail(f"STOP with {len(m.stack)} values left on the stack")
    m.result = value
    return _STOP


def _proto(m: Machine):
    version = m.take(1)[0]
    if not 2 <= version <= 5:
        m.fail(f"pickle protocol {version}; torch.save writes protocols 2 to 5")


def _frame(m: Machine):
    size = m.unpack("<Q")
    if size > len(m.data) - m.pos:
        m.fail(f"a frame of {size} bytes in {len(m.data) - m.pos} remaining")


def _put(m: Machine, index: int):
    if index == len(m.memo):
        m.memo.append(m.top())
    elif index < len(m.memo):
        m.memo[index] = m.top()
    else:
        m.fail(f"memo index {index} skips ahead of the {len(m.memo)} entries stored "
               "(picklers number them densely)")


def _get(m: Machine, index: int):
    if index >= len(m.memo):
        m.fail(f"memo index {index} was never stored ({len(m.memo)} entries)")
    m.push(m.memo[index])


def _global(m: Machine, module: str, name: str):
    m.push(m.resolver.find_global(module, name))


def _stack_global(m: Machine):
    name, module = m.pop(), m.pop()
    if type(name) is not str or type(module) is not str:
        m.fail(f"STACK_GLOBAL needs two strings, got {quote(module)}, {quote(name)}")
    _global(m, module, name)


def _reduce(m: Machine):
    args, func = m.pop(), m.pop()
    if type(func) is not Global:
        m.fail(f"call of {quote(func)}, which is not an allowed global")
    if type(args) not in (tuple, _Args):
        m.fail(f"call of {func.name} with {quote(args)} as arguments, expected a tuple")
    if func.kind in ("set", "frozenset"):
        if len(args) > 1 or (args and type(args[0]) not in (list, tuple)):
            m.fail(f"{func.name} of {quote(args)}, expected one list of members")
        m.push(m.make_set(set if func.kind == "set" else frozenset, args[0] if args else ()))
        return
    result = m.resolver.call(func, args)
    if func.kind == "ordered_dict":
        m._ordered.add(id(result))
        m._keep.append(result)
    m.push(result)


def _build(m: Machine):
    state = m.pop()
    target = m.top()
    if type(target) is not dict or id(target) not in m._ordered:
        m.fail(f"BUILD on {quote(target)}; torch.save writes BUILD only for an "
               "OrderedDict's metadata")
    parts = state if type(state) is tuple and len(state) == 2 else (state,)
    for part in parts:
        if part is not None and not (type(part) is dict and all(type(k) is str for k in part)):
            m.fail(f"OrderedDict state must be a dict of attributes, got {quote(part)}")
    # The attributes (``_metadata``) are dropped: the result is a plain dict.


def _persid(m: Machine):
    m.push(m.resolver.persistent(m.value(m.pop())))


def _dup(m: Machine):
    m.push(m.top())


def _appends(m: Machine, items: list):
    target = m.mutable(m.top(), list, "APPEND")
    items = [m.value(i) for i in items]
    m.record(target, items)
    target.extend(items)


def _setitems(m: Machine, items: list):
    m.set_items(m.mutable(m.top(), dict, "SETITEM"), items)


def _additems(m: Machine, items: list):
    m.add_items(m.mutable(m.top(), set, "ADDITEMS"), items)


def _tuple_n(n: int):
    def op(m: Machine):
        if len(m.stack) < n:
            m.fail(f"stack underflow at byte {m.pos - 1}")
        items = m.stack[len(m.stack) - n:] if n else []
        del m.stack[len(m.stack) - n:]
        m.push(m.make_tuple(items))
    return op


def _from_list(m: Machine):
    items = [m.value(i) for i in m.pop_mark()]
    m.record(items, items)
    m.push(items)


def _from_dict(m: Machine):
    made: dict = {}
    m.set_items(made, m.pop_mark())
    m.push(made)


def _mark_stack(m: Machine):
    m.mark()


def _pop_mark(m: Machine):
    m.pop_mark()


def _fixed(fmt: str, then):
    size = struct.calcsize(fmt)

    def op(m: Machine):
        then(m, struct.unpack(fmt, m.take(size))[0])
    return op


def _push_number(m: Machine, n):
    m.push(n)


def _push_text(m: Machine, n: int):
    m.push(m.text(n))


def _push_bytes(m: Machine, n: int):
    m.push(bytes(m.take(n)))


def _push_long(m: Machine, n: int):
    m.push(m.long(n))


def _push_value(v):
    def op(m: Machine):
        m.push(v)
    return op


_OPCODES = {
    0x80: _proto,                                          # PROTO
    0x95: _frame,                                          # FRAME
    ord("."): _stop,                                       # STOP
    ord("("): _mark_stack,                                 # MARK
    ord("0"): lambda m: m.pop(),                           # POP
    ord("1"): _pop_mark,                                   # POP_MARK
    ord("2"): _dup,                                        # DUP
    ord("N"): _push_value(None),                           # NONE
    0x88: _push_value(True),                               # NEWTRUE
    0x89: _push_value(False),                              # NEWFALSE
    ord("J"): _fixed("<i", _push_number),                     # BININT
    ord("K"): _fixed("<B", _push_number),                     # BININT1
    ord("M"): _fixed("<H", _push_number),                     # BININT2
    0x8A: _fixed("<B", _push_long),                        # LONG1
    0x8B: _fixed("<I", _push_long),                        # LONG4
    ord("G"): _fixed(">d", _push_number),                     # BINFLOAT (big-endian)
    ord("X"): _fixed("<I", _push_text),                    # BINUNICODE
    0x8C: _fixed("<B", _push_text),                        # SHORT_BINUNICODE
    0x8D: _fixed("<Q", _push_text),                        # BINUNICODE8
    ord("T"): _fixed("<I", _push_text),                    # BINSTRING (Python 2 str)
    ord("U"): _fixed("<B", _push_text),                    # SHORT_BINSTRING
    ord("B"): _fixed("<I", _push_bytes),                   # BINBYTES
    ord("C"): _fixed("<B", _push_bytes),                   # SHORT_BINBYTES
    0x8E: _fixed("<Q", _push_bytes),                       # BINBYTES8
    0x96: _fixed("<Q", _push_bytes),                       # BYTEARRAY8 (as bytes)
    ord("]"): lambda m: m.push([]),                        # EMPTY_LIST
    ord("}"): lambda m: m.push({}),                        # EMPTY_DICT
    ord(")"): lambda m: m.push(m.make_tuple([])),          # EMPTY_TUPLE
    0x8F: lambda m: m.push(set()),                         # EMPTY_SET
    ord("a"): lambda m: _appends(m, [m.pop()]),            # APPEND
    ord("e"): lambda m: _appends(m, m.pop_mark()),         # APPENDS
    ord("s"): lambda m: _setitems(m, [*reversed([m.pop(), m.pop()])]),  # SETITEM
    ord("u"): lambda m: _setitems(m, m.pop_mark()),        # SETITEMS
    0x90: lambda m: _additems(m, m.pop_mark()),            # ADDITEMS
    0x91: lambda m: m.push(m.make_set(frozenset, m.pop_mark())),  # FROZENSET
    ord("l"): _from_list,                                  # LIST
    ord("d"): _from_dict,                                  # DICT
    ord("t"): lambda m: m.push(m.make_tuple(m.pop_mark())),  # TUPLE
    0x85: _tuple_n(1),                                     # TUPLE1
    0x86: _tuple_n(2),                                     # TUPLE2
    0x87: _tuple_n(3),                                     # TUPLE3
    ord("q"): _fixed("<B", _put),                          # BINPUT
    ord("r"): _fixed("<I", _put),                          # LONG_BINPUT
    0x94: lambda m: _put(m, len(m.memo)),                  # MEMOIZE
    ord("h"): _fixed("<B", _get),                          # BINGET
    ord("j"): _fixed("<I", _get),                          # LONG_BINGET
    ord("c"): lambda m: _global(m, m.line(), m.line()),    # GLOBAL
    0x93: _stack_global,                                   # STACK_GLOBAL
    ord("R"): _reduce,                                     # REDUCE
    0x81: _reduce,                                         # NEWOBJ: cls(*args) here
    ord("b"): _build,                                      # BUILD
    ord("Q"): _persid,                                     # BINPERSID
}

# Opcodes nplstm refuses, by name, for clearer messages.
_UNSUPPORTED = {
    0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", ord("I"): "INT", ord("L"): "LONG",
    ord("F"): "FLOAT", ord("S"): "STRING", ord("V"): "UNICODE", ord("P"): "PERSID",
    ord("p"): "PUT", ord("g"): "GET", ord("i"): "INST", ord("o"): "OBJ",
    0x92: "NEWOBJ_EX", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
}


def run_pickle(data, resolver: Resolver, source: str, start: int = 0):
    """Interpret the pickle at ``data[start:]``; return ``(value, end offset)``."""
    machine = Machine(data, resolver, source, start)
    try:
        return machine.run()
    except RecursionError:  # pragma: no cover - depth is bounded; belt and braces
        machine.fail("nesting too deep")
    except MemoryError:
        machine.fail("out of memory while reading the pickle")
