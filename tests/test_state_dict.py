"""state_dict / load_state_dict: keys, shapes, dtypes, prefixes and every error."""

import numpy as np
import pytest
from helpers import PAIRS, T, assert_close, randomize, torch, twin

import nplstm


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_round_trip_through_torch(kind):
    """nplstm -> torch -> nplstm gives the same arrays and the same outputs."""
    kwargs = {"num_layers": 2, "bidirectional": True}
    if kind == "lstm":
        kwargs["proj_size"] = 2
    ours = PAIRS[kind][0](3, 5, dtype=np.float64, seed=8, **kwargs)
    theirs = PAIRS[kind][1](3, 5, **kwargs).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    assert_close(ours(x)[0], theirs(T(x))[0], np.float64)
    back = PAIRS[kind][0](3, 5, dtype=np.float64, **kwargs)
    back.load_state_dict(theirs.state_dict())
    for k, v in ours.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[k], v)


def test_state_dict_is_a_copy_and_params_are_read_only():
    m = nplstm.LSTM(3, 5, seed=0)
    sd = m.state_dict()
    sd["weight_ih_l0"][:] = 7
    assert not np.any(m.weight_ih_l0 == 7)
    with pytest.raises(ValueError, match="read-only"):
        m.weight_ih_l0[0, 0] = 1.0


def test_attribute_assignment_replaces_parameter_and_invalidates_cache():
    m = nplstm.RNN(2, 3, dtype=np.float64, seed=0)
    x = np.ones((4, 1, 2))
    before = m(x)[0]
    m.weight_hh_l0 = np.zeros((3, 3))
    after = m(x)[0]
    assert not np.allclose(before, after)
    # with W_hh = 0 each step only sees its own input: h_t = tanh(W_ih x + b)
    np.testing.assert_allclose(after[0], after[3], rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match=r"weight_hh_l0: expected shape \(3, 3\), got \(3, 2\)"):
        m.weight_hh_l0 = np.zeros((3, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_casts_to_layer_dtype(dtype):
    t = randomize(torch.nn.GRU(3, 4).double())
    m = nplstm.GRU(3, 4, dtype=dtype)
    m.load_state_dict(t.state_dict())
    assert all(p.dtype == dtype for p in m.parameters())
    m.load_state_dict({k: v.to(torch.bfloat16) for k, v in t.state_dict().items()})
    assert m.weight_ih_l0.dtype == dtype


def test_load_whole_model_dict_by_prefix():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(5, 2)

    tm = randomize(Model().double())
    sd = tm.state_dict()
    lstm = nplstm.LSTM(3, 5, num_layers=2, batch_first=True, dtype=np.float64)
    fc = nplstm.Linear(5, 2, dtype=np.float64)
    assert lstm.load_state_dict(sd, prefix="lstm.") == ([], [])
    fc.load_state_dict(sd, prefix="fc.")
    x = np.random.default_rng(0).standard_normal((2, 6, 3))
    out, _ = lstm(x)
    want = tm.fc(tm.lstm(T(x))[0])
    assert_close(fc(out), want, np.float64)
    # without the prefix: every key is reported, with a hint about the prefix
    with pytest.raises(ValueError, match=r"(?s)missing keys: weight_ih_l0.*prefix \['lstm.'\]"):
        lstm.load_state_dict(sd)


def test_errors_name_every_missing_unexpected_and_mismatched_key():
    m = nplstm.LSTM(3, 5, num_layers=2)
    sd = m.state_dict()
    del sd["bias_hh_l1"], sd["weight_ih_l0"]
    sd["weight_hh_l1"] = np.zeros((20, 4))
    sd["extra"] = np.zeros(3)
    with pytest.raises(ValueError) as err:
        m.load_state_dict(sd)
    msg = str(err.value)
    assert "missing keys: weight_ih_l0, bias_hh_l1" in msg
    assert "unexpected keys: extra" in msg
    assert "weight_hh_l1: expected shape (20, 5), got (20, 4)" in msg


def test_failed_load_changes_nothing():
    m = nplstm.LSTM(3, 5, seed=0)
    before = m.state_dict()
    sd = {k: np.ones_like(v) for k, v in before.items()}
    sd["bias_hh_l0"] = np.ones(3)  # wrong shape
    with pytest.raises(ValueError):
        m.load_state_dict(sd)
    for k, v in before.items():
        np.testing.assert_array_equal(m.state_dict()[k], v)


def test_non_strict_returns_incompatible_keys_but_shapes_still_checked():
    m = nplstm.GRU(3, 5)
    sd = m.state_dict()
    del sd["bias_ih_l0"]
    sd["foo"] = np.zeros(1)
    res = m.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["bias_ih_l0"] and res.unexpected_keys == ["foo"]
    sd["weight_ih_l0"] = np.zeros((1, 1))
    with pytest.raises(ValueError, match="weight_ih_l0: expected shape"):
        m.load_state_dict(sd, strict=False)


@pytest.mark.parametrize("bad,err,match", [
    ([1, 2], TypeError, "state_dict must be a mapping"),
    ({"weight_ih_l0": "text"}, TypeError, r"state_dict\['weight_ih_l0'\] must hold real numbers"),
])
def test_bad_state_dict_values(bad, err, match):
    with pytest.raises(err, match=match):
        nplstm.RNN(3, 5).load_state_dict(bad)


def test_prefix_must_be_str():
    with pytest.raises(TypeError, match="prefix must be a str"):
        nplstm.RNN(3, 5).load_state_dict({}, prefix=1)


def test_state_dict_prefix_and_cells_keys():
    assert list(nplstm.LSTMCell(2, 3).state_dict()) == [
        "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    assert list(nplstm.Linear(2, 3).state_dict(prefix="fc.")) == ["fc.weight", "fc.bias"]
    assert list(nplstm.GRU(2, 3, bias=False, bidirectional=True).state_dict()) == [
        "weight_ih_l0", "weight_hh_l0", "weight_ih_l0_reverse", "weight_hh_l0_reverse"]


def test_cells_load_from_torch():
    ours, theirs = twin("lstm", 3, 4, cell=True)
    for k, v in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[k], v.numpy())


def test_non_string_keys_are_unexpected():
    m = nplstm.RNN(3, 5)
    sd = {**m.state_dict(), 1: np.zeros(2)}
    with pytest.raises(ValueError, match="unexpected keys: 1"):
        m.load_state_dict(sd)
    assert m.load_state_dict(sd, strict=False).unexpected_keys == ["1"]


@pytest.mark.parametrize("ours,theirs,match", [
    (nplstm.LSTM, torch.nn.GRU(4, 4), ("weight_ih_l0 has 12 rows; an LSTM with hidden_size 4 "
                                      r"needs 4 x 4 = 16 \(these look like a GRU's weights\)")),
    (nplstm.GRUCell, torch.nn.LSTMCell(4, 4), "these look like an LSTM's weights"),
    (nplstm.RNNCell, torch.nn.GRUCell(4, 6), "these look like a GRU's weights"),
])
def test_from_state_dict_names_the_wrong_cell_type(ours, theirs, match):
    with pytest.raises(ValueError, match=match):
        ours.from_state_dict(theirs.state_dict())


def test_from_state_dict_prefix_must_be_str():
    with pytest.raises(TypeError, match="prefix must be a str, got NoneType"):
        nplstm.GRU.from_state_dict({}, prefix=None)


def test_from_state_dict_with_projection_and_cells():
    t = torch.nn.LSTM(4, 6, proj_size=2)
    m = nplstm.LSTM.from_state_dict(t.state_dict())
    assert (m.input_size, m.hidden_size, m.proj_size) == (4, 6, 2)
    c = nplstm.GRUCell.from_state_dict(torch.nn.GRUCell(2, 5, bias=False).state_dict())
    assert (c.input_size, c.hidden_size, c.bias) == (2, 5, False)
