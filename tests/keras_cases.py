"""Keras models for the Keras importer's tests and fixtures (needs keras, KERAS_BACKEND=torch).

Each case builds a small Keras 3 model, gives every weight random non-zero
values (biases included) and lists the calls to make: ``("x", array)`` runs
``model.predict`` on the array; ``("reset",)`` resets stateful layers. Sizes
are distinct: N=3 sequences, L=7 steps, F=3 features, units 5/4/6.
Masked inputs have padding (all-zero steps) in the middle, at the end and at
the start of a sequence.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

N, L, F = 3, 7, 3


def inputs(seed, masked=False, n=N):
    x = np.random.default_rng(seed).normal(size=(n, L, F)).astype(np.float32)  # (N, L, F)
    if masked:
        x[0, 2:4] = 0.0  # padding in the middle
        x[1, 5:] = 0.0  # at the end
        x[2 % n, :2] = 0.0  # at the start
    return x


def randomize(model, seed):
    """Every weight ~ U(-1, 1): random, non-zero, biases included."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.uniform(-1, 1, size=tuple(w.shape)).astype(w.dtype))
    return model


def _seq(*layers, batch=None):
    import keras

    shape = keras.Input(batch_shape=(batch, L, F)) if batch else keras.Input((L, F))
    return keras.Sequential([shape, *layers])


def _fn(make, batch=None):
    import keras

    inp = keras.Input(batch_shape=(batch, L, F)) if batch else keras.Input((L, F))
    return keras.Model(inp, make(inp))


def cases():
    """``{name: (build() -> model, masked, stateful)}``."""
    import keras
    from keras import layers as kl

    out = {
        "lstm_seq": (lambda: _seq(kl.LSTM(5, return_sequences=True)), False, False),
        "lstm_last_softmax": (lambda: _seq(kl.LSTM(5), kl.Dense(4, activation="softmax")),
                              False, False),
        "gru_reset_after": (lambda: _seq(kl.GRU(4, return_sequences=True)), False, False),
        "gru_reset_before": (lambda: _seq(kl.GRU(4, reset_after=False,
                                                 return_sequences=True)), False, False),
        "simple_rnn_relu": (lambda: _seq(kl.SimpleRNN(4, activation="relu",
                                                      return_sequences=True)),
                            False, False),
        "no_bias": (lambda: _seq(kl.LSTM(5, use_bias=False, return_sequences=True),
                                 kl.GRU(4, use_bias=False, return_sequences=True),
                                 kl.SimpleRNN(3, use_bias=False), kl.Dense(2, use_bias=False)),
                    False, False),
        "stacked": (lambda: _seq(kl.LSTM(5, return_sequences=True),
                                 kl.GRU(4, return_sequences=True), kl.SimpleRNN(6),
                                 kl.Dense(2, activation="tanh")), False, False),
        "go_backwards": (lambda: _seq(kl.LSTM(5, go_backwards=True, return_sequences=True),
                                      kl.GRU(4, go_backwards=True)), False, False),
        "plumbing": (lambda: _seq(kl.LSTM(5, return_sequences=True), kl.Dropout(0.5),
                                  kl.SpatialDropout1D(0.3), kl.GaussianNoise(1.0),
                                  kl.TimeDistributed(kl.Dense(3, activation="elu")),
                                  kl.Activation("selu"), kl.Flatten(),
                                  kl.Dense(2, activation="sigmoid")), False, False),
        "dense_activations": (lambda: _seq(
            kl.LSTM(5, return_sequences=True), kl.Activation("relu6"),
            kl.GaussianDropout(0.3), kl.Dense(4, activation="leaky_relu"),
            kl.Activation("softplus"), kl.AlphaDropout(0.2), kl.Dense(4, activation="softsign"),
            kl.Activation("exponential"), kl.Dense(4, activation="mish"),
            kl.Activation("hard_silu"), kl.Dense(4, activation="hard_sigmoid"),
            kl.Activation("silu"), kl.Dense(4, activation="relu"), kl.Dense(3),
            kl.Activation("linear")),
            False, False),
        "reshape": (lambda: _seq(kl.GRU(4, return_sequences=True), kl.Reshape((L * 4,)),
                                 kl.Dense(3, activation="swish")), False, False),
        "hard_sigmoid": (lambda: _seq(kl.LSTM(5, recurrent_activation="hard_sigmoid",
                                              return_sequences=True),
                                      kl.GRU(4, recurrent_activation="hard_sigmoid",
                                             return_sequences=True),
                                      kl.SimpleRNN(3, activation="hard_sigmoid")),
                         False, False),
        "activations": (lambda: _seq(kl.LSTM(5, activation="relu",
                                              recurrent_activation="tanh",
                                              return_sequences=True),
                                      kl.GRU(4, activation="softsign", return_sequences=True)),
                        False, False),
        "masked_stack": (lambda: _fn(lambda i: kl.Dense(2)(kl.LSTM(6)(kl.Bidirectional(
            kl.GRU(4, return_sequences=True), merge_mode="sum")(kl.LSTM(
                5, return_sequences=True)(kl.Masking(0.0)(i)))))), True, False),
        "masked_functional_plumbing": (lambda: _fn(lambda i: kl.GRU(3)(kl.Dense(4)(
            kl.TimeDistributed(kl.Dense(4, activation="relu"))(kl.Activation("tanh")(
                kl.Dropout(0.2)(kl.LSTM(5, return_sequences=True)(kl.Masking(0.0)(i)))))))),
            True, False),
        "masked_seq_out": (lambda: _seq(kl.Masking(0.0), kl.LSTM(5, return_sequences=True),
                                        kl.SimpleRNN(4, return_sequences=True),
                                        kl.TimeDistributed(kl.Dense(2))), True, False),
        "masked_backwards": (lambda: _seq(kl.Masking(0.0),
                                          kl.GRU(4, go_backwards=True, return_sequences=True),
                                          kl.LSTM(5, go_backwards=True)), True, False),
        "masked_zero_output": (lambda: _fn(lambda i: kl.GRU(4, zero_output_for_mask=True)(
            kl.LSTM(5, return_sequences=True, zero_output_for_mask=True)(
                kl.Masking(0.0)(i)))), True, False),
        "return_state_lstm": (lambda: _fn(lambda i: kl.LSTM(
            5, return_sequences=True, return_state=True)(i)), False, False),
        "return_state_gru_masked": (lambda: _fn(lambda i: kl.GRU(4, return_state=True)(
            kl.Masking(0.0)(i))), True, False),
        "return_state_pick": (lambda: _fn(lambda i: kl.GRU(4, return_state=True)(i)[1:]),
                              False, False),
        "bidirectional_None_first": (lambda: _fn(lambda i: kl.Dense(2)(kl.Bidirectional(
            kl.LSTM(5, return_sequences=True), merge_mode=None)(kl.Masking(0.0)(i))[1])),
            True, False),
        "return_state_inside": (lambda: _fn(lambda i: kl.Dense(2)(kl.LSTM(
            5, return_state=True)(i)[0])), False, False),
        # Two LSTMs of the same shapes whose names run against Keras's order: the
        # .keras file keeps "lstm_1" under layers/lstm and "lstm" under layers/lstm_1,
        # so loading by name would silently swap their weights.
        "name_trap": (lambda: _seq(kl.Dense(4), kl.LSTM(4, return_sequences=True,
                                                        name="lstm_1"),
                                   kl.LSTM(4, name="lstm")), False, False),
        # (unroll with a mask and go_backwards fails inside Keras 3.15's torch backend:
        # torch.flip on a tuple; not a case Keras can make)
        "unrolled_masked": (lambda: _seq(kl.Masking(0.0), kl.LSTM(5, unroll=True,
                                                                  return_sequences=True),
                                         kl.GRU(4, unroll=True)),
                            True, False),
        "stateful_masked": (lambda: _seq(kl.Masking(0.0), kl.GRU(4, stateful=True,
                                                                  return_sequences=True),
                                         kl.LSTM(5, stateful=True), batch=N),
                            True, True),
        "recurrent_activations": (lambda: _seq(
            kl.LSTM(5, activation="elu", recurrent_activation="softsign",
                    return_sequences=True),
            kl.GRU(4, activation="softplus", recurrent_activation="hard_sigmoid",
                   reset_after=False, return_sequences=True),
            kl.SimpleRNN(3, activation="linear", go_backwards=True)), False, False),
        "stateful": (lambda: _seq(kl.LSTM(5, stateful=True, return_sequences=True),
                                  kl.Bidirectional(kl.GRU(4, stateful=True)), batch=N),
                     False, True),
    }
    for mode in ("concat", "sum", "mul", "ave", None):
        for masked in (False, True):
            def make(mode=mode, masked=masked):
                def body(i):
                    x = kl.Masking(0.0)(i) if masked else i
                    y = kl.Bidirectional(kl.LSTM(5, return_sequences=True),
                                         merge_mode=mode)(x)
                    if mode is None:
                        return y
                    return kl.Bidirectional(kl.GRU(4), merge_mode=mode)(y)
                return _fn(body)
            name = f"bidirectional_{mode}" + ("_masked" if masked else "")
            out[name] = (make, masked, False)
    out["bidirectional_return_state"] = (lambda: _fn(lambda i: kl.Bidirectional(
        kl.LSTM(5, return_state=True))(kl.Masking(0.0)(i))), True, False)
    del keras
    return out


def steps(name, masked, stateful, seed):
    """The calls of one case: predictions, and for stateful models resets between."""
    if not stateful:
        return [("x", inputs(seed, masked))]
    return [("x", inputs(seed, masked)), ("x", inputs(seed + 1, masked)), ("reset",),
            ("x", inputs(seed + 2, masked)), ("x", inputs(seed + 3))]


def reset(model):
    """Keras 3 has no Model.reset_states: reset each stateful layer."""
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_states()


def run_keras(model, calls):
    """Keras's outputs for the calls: a list (one entry per "x") of lists of arrays."""
    results = []
    for call in calls:
        if call[0] == "reset":
            reset(model)
            continue
        y = model.predict(call[1], batch_size=len(call[1]), verbose=0)
        results.append([np.asarray(a) for a in (y if isinstance(y, (list, tuple)) else [y])])
    return results


#: Run in a subprocess where keras, tensorflow and torch cannot be imported: loads
#: each file with nplstm and saves its outputs. argv: manifest .npz, output .npz.
RUNNER = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tensorflow", "tf_keras", "torch"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
import json
import numpy as np
import nplstm
manifest = json.load(open(sys.argv[1]))
arrays = np.load(sys.argv[2])
out, errors = {}, {}
for case in manifest:
    try:
        model = nplstm.from_keras(case["file"])
        k = 0
        for i, call in enumerate(case["calls"]):
            if call == "reset":
                model.reset_states()
                continue
            y = model(arrays[call])
            for j, a in enumerate(y if isinstance(y, list) else [y]):
                out[f"{case['key']}/{k}/{j}"] = a
            k += 1
    except Exception as exc:  # reported by the test of this case
        errors[case["key"]] = f"{type(exc).__name__}: {exc}"
for name in ("keras", "tensorflow", "torch"):
    assert name not in sys.modules, name
np.savez(sys.argv[3], **out)
json.dump(errors, open(sys.argv[3] + ".errors.json", "w"))
"""
