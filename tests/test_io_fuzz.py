"""Fuzz the weight readers: mutated valid files load or raise WeightsFormatError.

Hypothesis mutates valid torch.save (zip and legacy), safetensors and .npz files
(raw bytes, or one zip entry's content re-zipped so the pickle and .npy parsers are
reached). Every load must return or raise WeightsFormatError -- no other exception,
no warning (pytest turns warnings into errors) -- within 5 s of CPU and 100 MB. Bounded to
about a minute on an idle 2-core machine; benchmarks/fuzz_weights.py runs longer.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from weights_fuzz import load, mutate, seeds

SEEDS = seeds()

EDIT = hs.tuples(hs.sampled_from(["set", "opcode", "insert", "delete", "repeat", "cut"]),
                 hs.floats(0, 1, exclude_max=True), hs.integers(0, 255))


@pytest.fixture(scope="module")
def memory():
    tracemalloc.start()
    yield
    tracemalloc.stop()


@pytest.mark.parametrize("name", list(SEEDS))
def test_seed_loads(tmp_path, name):
    path = tmp_path / "seed"
    path.write_bytes(SEEDS[name])
    assert load(path) == "loaded"


@pytest.mark.parametrize("name", list(SEEDS))
@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(edits=hs.lists(EDIT, min_size=1, max_size=6),
       inside=hs.one_of(hs.none(), hs.floats(0, 1, exclude_max=True)))
def test_mutated_files_load_or_are_refused(tmp_path, memory, name, edits, inside):
    path = tmp_path / "fuzzed"
    path.write_bytes(mutate(SEEDS[name], edits, inside))
    tracemalloc.reset_peak()
    start = time.process_time()
    load(path)
    assert time.process_time() - start < 5
    assert tracemalloc.get_traced_memory()[1] < 100 << 20


# Random opcode streams: every opcode nplstm reads (and some it refuses), with short
# arguments, so the interpreter's own checks are reached in every order.
OPCODE_ARGS = {
    b"K": 1, b"M": 2, b"J": 4, b"\x8a": 1, b"G": 8, b"q": 1, b"h": 1, b"r": 4, b"j": 4,
    b"\x8c": 1, b"C": 1, b"X": 4, b"\x80": 1,
}
OPCODES = sorted(set(b"().0123NK]}\x85\x86\x87aesu\x8f\x90\x91ltdqhrjRbQ\x88\x89\x94\x93"
                     b"\x8a\x8cCXGMJ\x80\x81\x82ciF"))


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=hs.lists(hs.tuples(hs.sampled_from(OPCODES), hs.binary(min_size=8, max_size=8)),
                    max_size=40),
       names=hs.sampled_from([b"", b"ccollections\nOrderedDict\n", b"ctorch\ndevice\n",
                              b"ctorch\nFloatStorage\n", b"c__builtin__\nset\n"]))
def test_random_opcode_streams(tmp_path, ops, names):
    from pt_assembler import write_pt

    body = names + b"".join(bytes([op]) + arg[:OPCODE_ARGS.get(bytes([op]), 0)]
                            for op, arg in ops)
    path = write_pt(tmp_path / "ops.pt", b"\x80\x02" + body + b".")
    start = time.process_time()
    load(path)
    assert time.process_time() - start < 5
