"""The opcodes of :mod:`nplstm.io.pickle_vm`: one small handler each, and the table.

Opcode bytes and argument formats are CPython's (Lib/pickletools.py, the documented
pickle opcodes); only those ``torch.save`` writes with protocols 2 to 5 are here.
Each handler takes the :class:`~nplstm.io.pickle_vm.Machine` and does work
proportional to what it reads or pops.
"""

from __future__ import annotations

import struct

from .pickle_vm import Args, Global, Machine, quote

STOP = object()  # returned by the STOP handler


def _stop(m: Machine):
    if m.marks:
        m.fail("STOP inside an open MARK")
    value = m.value(m.pop())
    if m.stack:
        m.fail(f"STOP with {len(m.stack)} values left on the stack")
    m.result = value
    return STOP


def _proto(m: Machine):
    version = m.take(1)[0]
    if not 2 <= version <= 5:
        m.fail(f"pickle protocol {version}; torch.save writes protocols 2 to 5")


def _frame(m: Machine):
    size = m.unpack("<Q")
    if size > len(m.data) - m.pos:
        m.fail_at_end(f"a frame of {size} bytes in {len(m.data) - m.pos} remaining")


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
    if type(args) not in (tuple, Args):
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


OPCODES = {
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
UNSUPPORTED = {
    0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", ord("I"): "INT", ord("L"): "LONG",
    ord("F"): "FLOAT", ord("S"): "STRING", ord("V"): "UNICODE", ord("P"): "PERSID",
    ord("p"): "PUT", ord("g"): "GET", ord("i"): "INST", ord("o"): "OBJ",
    0x92: "NEWOBJ_EX", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
}
