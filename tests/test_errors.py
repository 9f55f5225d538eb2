"""Every bad input gets a clear error naming the argument, the expectation and the value."""

import numpy as np
import pytest

import nplstm

LAYERS = [nplstm.LSTM, nplstm.GRU, nplstm.RNN]
CELLS = [nplstm.LSTMCell, nplstm.GRUCell, nplstm.RNNCell]


@pytest.mark.parametrize("cls", LAYERS + CELLS)
@pytest.mark.parametrize("args,err,match", [
    ((0, 5), ValueError, "input_size must be an integer >= 1, got 0"),
    ((3, -1), ValueError, "hidden_size must be an integer >= 1, got -1"),
    ((3.0, 5), TypeError, "input_size must be an int, got float 3.0"),
    ((3, True), TypeError, "hidden_size must be an int, got bool True"),
])
def test_bad_sizes(cls, args, err, match):
    with pytest.raises(err, match=match):
        cls(*args)


@pytest.mark.parametrize("cls", LAYERS)
@pytest.mark.parametrize("kwargs,err,match", [
    ({"num_layers": 0}, ValueError, "num_layers must be an integer >= 1, got 0"),
    ({"dropout": 1.5}, ValueError, r"dropout should be a number in range \[0, 1\].*1.5"),
    ({"dropout": True}, ValueError, "dropout should be a number"),
    ({"bias": "yes"}, TypeError, "bias must be a bool, got str 'yes'"),
    ({"batch_first": 1}, TypeError, "batch_first must be a bool, got int 1"),
    ({"bidirectional": None}, TypeError, "bidirectional must be a bool"),
    ({"dtype": np.int32}, TypeError, "dtype must be numpy.float32 or numpy.float64"),
    ({"dtype": "float16"}, TypeError, "dtype must be numpy.float32 or numpy.float64"),
    ({"dtype": None}, TypeError, "dtype must be numpy.float32 or numpy.float64, got None"),
    ({"dtype": "bogus"}, TypeError, "got 'bogus'"),
    ({"dtype": 3.5}, TypeError, "got 3.5"),
    ({"dtype": [1]}, TypeError, r"got \[1\]"),
])
def test_bad_options(cls, kwargs, err, match):
    with pytest.raises(err, match=match):
        cls(3, 5, **kwargs)


def test_proj_size_errors():
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size, got "
                                         "proj_size=5 and hidden_size=5"):
        nplstm.LSTM(3, 5, proj_size=5)
    with pytest.raises(ValueError, match="proj_size must be an integer >= 0, got -1"):
        nplstm.LSTM(3, 5, proj_size=-1)
    for cls in (nplstm.GRU, nplstm.RNN):  # PyTorch's error, word for word
        with pytest.raises(ValueError, match="proj_size argument is only supported for "
                                             "LSTM, not RNN or GRU"):
            cls(3, 5, proj_size=2)
        assert cls(3, 5, proj_size=0).hidden_size == 5


def test_nonlinearity_error():
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        nplstm.RNN(3, 5, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity must be"):
        nplstm.RNNCell(3, 5, nonlinearity="gelu")


def test_dropout_single_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nplstm.GRU(3, 5, dropout=0.2)


@pytest.mark.parametrize("cls", LAYERS)
def test_bad_input(cls):
    m = cls(3, 5)
    with pytest.raises(ValueError, match=r"Expected input to be 2D or 3D, got 4D input"):
        m(np.zeros((2, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"Expected input to be 2D or 3D, got 1D"):
        m(np.zeros(3))
    with pytest.raises(ValueError, match="input.size\\(-1\\) must be equal to input_size. "
                                         "Expected 3, got 4"):
        m(np.zeros((7, 2, 4)))
    with pytest.raises(TypeError, match="input must hold real numbers, got an array of dtype"):
        m(np.array([["a", "b", "c"]]))
    with pytest.raises(TypeError, match="input must hold real numbers"):
        m(np.zeros((2, 3), dtype=complex))
    with pytest.raises(TypeError, match="input must be array-like numbers"):
        m([[1, 2, 3], [1, 2]])
    with pytest.raises(ValueError, match="at least one time step"):
        m(np.zeros((0, 2, 3)))


@pytest.mark.parametrize("cls", [nplstm.GRU, nplstm.RNN])
def test_bad_hidden_state(cls):
    m = cls(3, 5, num_layers=2)
    x = np.zeros((7, 2, 3))
    with pytest.raises(ValueError, match=r"Expected h_0 of shape \(2, 2, 5\), got \(1, 2, 5\)"):
        m(x, np.zeros((1, 2, 5)))
    with pytest.raises(ValueError, match=r"h_0 must be 3-D \(batched input\) with shape "
                                         r"\(2, 2, 5\), got 2-D"):
        m(x, np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"h_0 must be 2-D \(unbatched input\)"):
        m(np.zeros((7, 3)), np.zeros((2, 1, 5)))
    with pytest.raises(TypeError, match=r"hx \(h_0\) must hold real numbers"):
        m(x, np.full((2, 2, 5), "x"))


def test_bad_lstm_state():
    m = nplstm.LSTM(3, 5, proj_size=2)
    x = np.zeros((7, 2, 3))
    with pytest.raises(TypeError, match=r"hx must be a tuple \(h_0, c_0\) of two arrays"):
        m(x, np.zeros((1, 2, 2)))
    with pytest.raises(TypeError, match=r"two arrays for LSTM, got a tuple of 1"):
        m(x, (np.zeros((1, 2, 2)),))
    with pytest.raises(TypeError, match=r"two arrays for LSTM, got a list of 3"):
        m(x, [np.zeros((1, 2, 2))] * 3)
    with pytest.raises(TypeError, match=r"\(h, c\) of two arrays for LSTMCell, got a tuple of 1"):
        nplstm.LSTMCell(3, 5)(x[0], (np.zeros((2, 5)),))
    with pytest.raises(ValueError, match=r"Expected h_0 of shape \(1, 2, 2\), got \(1, 2, 5\)"):
        m(x, (np.zeros((1, 2, 5)), np.zeros((1, 2, 5))))
    with pytest.raises(ValueError, match=r"Expected c_0 of shape \(1, 2, 5\), got \(1, 2, 2\)"):
        m(x, (np.zeros((1, 2, 2)), np.zeros((1, 2, 2))))


@pytest.mark.parametrize("cls", CELLS)
def test_bad_cell_input(cls):
    cell = cls(3, 5)
    with pytest.raises(ValueError, match=r"Expected input to be 1D or 2D, got 3D"):
        cell(np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match="input has inconsistent input_size: got 4 expected 3"):
        cell(np.zeros((2, 4)))
    state = np.zeros((3, 5))
    if cls is nplstm.LSTMCell:
        with pytest.raises(TypeError, match=r"hx must be a tuple \(h, c\)"):
            cell(np.zeros((2, 3)), state)
        state = (state, state)
    with pytest.raises(ValueError, match=r"expected h of shape \(2, 5\) for input of batch "
                                         r"size 2, got \(3, 5\)"):
        cell(np.zeros((2, 3)), state)


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="'LSTM' object has no attribute 'weight_ih_l5'"):
        _ = nplstm.LSTM(3, 5).weight_ih_l5


def test_train_mode_must_be_bool():
    with pytest.raises(TypeError, match="mode must be a bool"):
        nplstm.LSTM(3, 5).train("yes")


def test_nan_propagates_like_torch():
    """Documented NaN policy: no check, NaN flows through like in PyTorch."""
    m = nplstm.LSTM(3, 5, seed=0)
    x = np.zeros((4, 1, 3))
    x[1, 0, 0] = np.nan
    out, (_h, c) = m(x)
    assert not np.isnan(out[0]).any() and np.isnan(out[1:]).all() and np.isnan(c).all()


def test_repr():
    assert repr(nplstm.LSTM(3, 5, num_layers=2, proj_size=2)) == \
        "LSTM(3, 5, num_layers=2, proj_size=2)"
    assert repr(nplstm.RNN(3, 5, nonlinearity="relu", dtype=np.float64)) == \
        "RNN(3, 5, nonlinearity='relu', dtype=float64)"
    assert repr(nplstm.GRUCell(2, 4)) == "GRUCell(2, 4)"


def test_torch_dtypes_are_understood():
    torch = pytest.importorskip("torch")
    assert nplstm.LSTM(3, 5, dtype=torch.float64).dtype == np.float64
    assert nplstm.GRUCell(3, 5, dtype=torch.float32).dtype == np.float32
    with pytest.raises(TypeError, match="got torch.float16"):
        nplstm.RNN(3, 5, dtype=torch.float16)


@pytest.mark.parametrize("cls", LAYERS)
def test_empty_batch_like_torch(cls):
    """N = 0 gives empty outputs and states, as in PyTorch; L = 0 is an error in both."""
    torch = pytest.importorskip("torch")
    ours, theirs = cls(3, 4, 2, bidirectional=True), getattr(torch.nn, cls.__name__)(
        3, 4, 2, bidirectional=True)
    got, want = ours(np.zeros((5, 0, 3))), theirs(torch.zeros(5, 0, 3))
    assert got[0].shape == tuple(want[0].shape) == (5, 0, 8)
    got_h = got[1][0] if cls is nplstm.LSTM else got[1]
    want_h = want[1][0] if cls is nplstm.LSTM else want[1]
    assert got_h.shape == tuple(want_h.shape) == (4, 0, 4)
    with pytest.raises(ValueError, match="trace needs at least one sequence"):
        ours.trace(np.zeros((5, 0, 3)))


@pytest.mark.parametrize("cls", CELLS)
def test_cell_empty_batch(cls):
    out = cls(3, 4)(np.zeros((0, 3)))
    for a in out if isinstance(out, tuple) else (out,):
        assert a.shape == (0, 4)


def test_absent_bias_reads_none_like_torch():
    assert nplstm.Linear(3, 4, bias=False).bias is None
    cell = nplstm.LSTMCell(3, 4, bias=False)
    assert cell.bias_ih is None and cell.bias_hh is None
    assert nplstm.Linear(3, 4).bias.shape == (4,)


def test_meta_tensor_is_named():
    torch = pytest.importorskip("torch")
    sd = {k: v.to("meta") for k, v in torch.nn.RNN(3, 4).state_dict().items()}
    with pytest.raises(ValueError, match=r"state_dict\['weight_ih_l0'\] is a tensor on the "
                                         r"'meta' device"):
        nplstm.RNN(3, 4).load_state_dict(sd)


def test_pickle_and_deepcopy_keep_parameters_read_only_and_fresh():
    import copy
    import pickle

    m = nplstm.LSTM(3, 4, dtype=np.float64, seed=0)
    x = np.ones((2, 1, 3))
    want = m(x)[0]  # builds the prepared weights
    for clone in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        np.testing.assert_array_equal(clone(x)[0], want)
        with pytest.raises(ValueError, match="read-only"):
            clone.weight_ih_l0[:] = 0
        clone.weight_hh_l0 = np.zeros((16, 4))
        assert not np.allclose(clone(x)[0], want)
        np.testing.assert_array_equal(m(x)[0], want)  # the original is untouched


def test_rnn_cell_nonlinearity_can_be_changed_like_torchs():
    """torch.nn.RNNCell reads ``nonlinearity`` on every call; so does nplstm's (the
    prepared weights are rebuilt), and a bad value is refused when it is set."""
    torch = pytest.importorskip("torch")
    ours = nplstm.RNNCell(3, 4, dtype=np.float64, seed=1)
    theirs = torch.nn.RNNCell(3, 4, dtype=torch.float64)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((6, 3))
    ours(x)
    ours.nonlinearity = theirs.nonlinearity = "relu"
    got, want = ours(x), theirs(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert (got == 0).any() and (got > 0).any()  # relu really ran
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'gelu'"):
        ours.nonlinearity = "gelu"
    assert ours.nonlinearity == "relu"


def test_rnn_layer_nonlinearity_is_fixed_when_built():
    """torch.nn.RNN ignores a later change of ``nonlinearity``; nplstm refuses it."""
    m = nplstm.RNN(3, 4, nonlinearity="relu")
    m.nonlinearity = "relu"  # the same value is fine
    with pytest.raises(AttributeError, match=r"nonlinearity of a built RNN cannot be changed"):
        m.nonlinearity = "tanh"
    assert m.nonlinearity == "relu"


@pytest.mark.parametrize("cls", [nplstm.LSTM, nplstm.GRU, nplstm.LSTMCell, nplstm.GRUCell])
def test_nonlinearity_is_tanh_outside_rnn(cls):
    m = cls(3, 4)
    assert m.nonlinearity == "tanh"
    with pytest.raises(ValueError, match=f"RNN and RNNCell only; {cls.__name__} is always"):
        m.nonlinearity = "relu"


def test_prefix_is_keyword_only():
    """PyTorch's third positional argument of load_state_dict is ``assign``."""
    m = nplstm.LSTM(3, 4)
    with pytest.raises(TypeError):
        m.load_state_dict(m.state_dict(), True, "lstm.")


def test_state_dict_prefix_is_keyword_only():
    """PyTorch's first positional argument of state_dict is ``destination``."""
    m = nplstm.GRU(3, 4, seed=1)
    with pytest.raises(TypeError):
        m.state_dict("gru.")
    sd = m.state_dict(prefix="gru.")
    assert sorted(sd) == sorted("gru." + k for k in m.state_dict())
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(sd["gru." + k], v)
