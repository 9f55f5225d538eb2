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
