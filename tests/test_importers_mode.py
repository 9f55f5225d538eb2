"""Importers of inference formats return eval-mode models; layers built by hand start
in training mode, as torch.nn modules do (issue 12, item 2)."""

import os

import pytest

import nplstm

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "keras")


def test_hand_built_layers_start_in_training_mode_like_torch():
    torch = pytest.importorskip("torch")
    assert nplstm.LSTM(3, 5).training is torch.nn.LSTM(3, 5).training is True


def test_from_onnx_layers_are_in_eval_mode():
    pytest.importorskip("onnx")
    from onnx_cases import node_model, weights

    layers = nplstm.from_onnx(node_model("LSTM", weights("LSTM", 1)))
    assert layers and all(layer.training is False for layer in layers.values())


@pytest.mark.parametrize("name", ["masked_stack.keras", "gru_reset_before.h5"])
def test_from_keras_model_is_in_eval_mode(name):
    pytest.importorskip("h5py")
    model = nplstm.from_keras(os.path.join(FIXTURES, name))
    inner = [getattr(m, "inner", m) for m in model]
    trainable = [m for m in inner if hasattr(m, "training")]
    assert trainable and all(m.training is False for m in trainable)
