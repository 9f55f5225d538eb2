"""Optimizers, clipping and losses == torch.optim / torch.nn (float64, 1e-12)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import T, torch

import nplstm
from nplstm import losses, optim

STEPS = 5


def _setup(seed=0):
    lstm = nplstm.LSTM(3, 4, dtype=np.float64, seed=seed)
    fc = nplstm.Linear(4, 2, dtype=np.float64, seed=seed + 1)
    model = {"lstm": lstm, "fc": fc}
    names = [f"{p}.{k}" for p, m in model.items() for k in m.state_dict()]
    tparams = [torch.nn.Parameter(T(v)) for m in model.values() for v in m.state_dict().values()]
    rng = np.random.default_rng(seed)
    grads = [{n: rng.standard_normal(p.shape) for n, p in zip(names, tparams)}
             for _ in range(STEPS)]
    return model, names, tparams, grads


CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.02, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.3, "amsgrad": True}),
    ("AdamW", {"lr": 0.02, "betas": (0.5, 0.7), "weight_decay": 0.0}),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{kw}" for n, kw in CASES])
def test_steps_equal_torch_optim(name, kw):
    model, names, tparams, grads = _setup()
    ours = getattr(optim, name)(model, **kw)
    theirs = getattr(torch.optim, name)(tparams, **kw)
    for g in grads:
        ours.step(g)
        for p, n in zip(tparams, names):
            p.grad = T(g[n])
        theirs.step()
        sd = {f"{p}.{k}": v for p, m in model.items() for k, v in m.state_dict().items()}
        for p, n in zip(tparams, names):
            diff = np.max(np.abs(sd[n] - p.detach().numpy()))
            assert diff <= 1e-12, (n, diff)


@pytest.mark.parametrize("name,kw", [CASES[2], CASES[7]])
def test_state_dict_resumes(name, kw):
    model, _, _, grads = _setup()
    a = getattr(optim, name)(model, **kw)
    for g in grads[:2]:
        a.step(g)
    saved = a.state_dict()
    model2 = {k: type(m).from_state_dict(m.state_dict(), dtype=np.float64)
              for k, m in model.items()}
    b = getattr(optim, name)(model2, lr=123.0)
    b.load_state_dict(saved)
    assert b.lr == kw["lr"]
    for g in grads[2:]:
        a.step(g)
        b.step(g)
    for k in model:
        for key, v in model[k].state_dict().items():
            np.testing.assert_array_equal(v, model2[k].state_dict()[key])
    assert saved["param_groups"][0]["params"] == list(range(len(a.param_names)))


def test_single_module_keys():
    lstm = nplstm.GRU(3, 4, dtype=np.float64, seed=0)
    opt = optim.SGD(lstm, lr=0.5)
    assert opt.param_names == list(lstm.state_dict())
    before = lstm.state_dict()
    opt.step({k: np.ones_like(v) for k, v in before.items()})
    np.testing.assert_allclose(lstm.weight_ih_l0, before["weight_ih_l0"] - 0.5, atol=1e-15)


def test_optimizer_errors():
    lstm = nplstm.LSTM(3, 4, seed=0)
    with pytest.raises(ValueError, match="Invalid learning rate value: -1"):
        optim.SGD(lstm, lr=-1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero"):
        optim.SGD(lstm, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1 value: 1.0"):
        optim.Adam(lstm, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"betas must be a pair"):
        optim.Adam(lstm, betas=0.9)
    with pytest.raises(TypeError, match="amsgrad must be a bool"):
        optim.AdamW(lstm, amsgrad=1)
    with pytest.raises(TypeError, match="module must be an nplstm module"):
        optim.SGD([lstm])
    with pytest.raises(TypeError, match=r"module\['x'\] must be an nplstm module"):
        optim.SGD({"x": 3})
    opt = optim.Adam(lstm)
    g = {k: np.zeros_like(v) for k, v in lstm.state_dict().items()}
    with pytest.raises(ValueError, match=r"missing \['bias_hh_l0'\]"):
        opt.step({k: v for k, v in g.items() if k != "bias_hh_l0"})
    with pytest.raises(ValueError, match=r"grads\['bias_hh_l0'\] must have shape \(16,\)"):
        opt.step({**g, "bias_hh_l0": np.zeros(3)})
    with pytest.raises(TypeError, match="grads must be a mapping"):
        opt.step([1])
    with pytest.raises(ValueError, match="must have 'state' and 'param_groups'"):
        opt.load_state_dict({})
    with pytest.raises(ValueError, match="different set of parameters"):
        opt.load_state_dict({"state": {}, "param_groups": [{"params": [0]}]})


@pytest.mark.parametrize("kw,message", [
    ({"lr": float("nan")}, "Invalid learning rate value: nan"),  # torch: not 0.0 <= lr
    ({"eps": float("nan")}, "Invalid epsilon value: nan"),
    ({"betas": (float("nan"), 0.9)}, "Invalid beta parameter at index 0 value: nan"),
])
def test_nan_hyperparameters_rejected_like_torch(kw, message):
    with pytest.raises(ValueError, match="Invalid"):
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], **kw)
    with pytest.raises(ValueError, match=message):
        optim.Adam(nplstm.LSTM(3, 4, seed=0), **kw)


def test_failed_step_changes_nothing():
    lstm = nplstm.LSTM(3, 4, seed=0)
    opt = optim.Adam(lstm, lr=0.1)
    before = lstm.state_dict()
    g = {k: np.ones_like(v) for k, v in before.items()}
    with pytest.raises(ValueError, match=r"grads\['bias_hh_l0'\] must have shape"):
        opt.step({**g, "bias_hh_l0": np.zeros(3)})  # the last key: the others were fine
    assert opt.state_dict()["state"] == {}
    for k, v in lstm.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_rejects_foreign_or_invalid_state():
    lstm = nplstm.LSTM(3, 4, seed=0)
    adam, sgd = optim.Adam(lstm), optim.SGD(lstm, momentum=0.9)
    with pytest.raises(ValueError, match=r"state_dict is not for SGD: its hyperparameters "
                                         r"are \['amsgrad', 'betas'"):
        sgd.load_state_dict(adam.state_dict())
    tl = torch.nn.LSTM(3, 4)
    with pytest.raises(ValueError, match="state_dict is not for Adam"):  # torch's own keys
        adam.load_state_dict(torch.optim.Adam(tl.parameters()).state_dict())
    with pytest.raises(ValueError, match="'param_groups' a list of one dict"):
        adam.load_state_dict({"state": 3, "param_groups": "x"})
    sd = adam.state_dict()
    sd["param_groups"][0]["lr"] = -5.0
    with pytest.raises(ValueError, match="Invalid learning rate value: -5.0"):
        adam.load_state_dict(sd)
    sd = adam.state_dict()
    sd["state"] = {7: {"step": 1.0}}
    with pytest.raises(ValueError, match=r"parameter indices in \[0, 4\)"):
        adam.load_state_dict(sd)
    assert adam.lr == 1e-3 and adam.state == {}  # untouched by the failed loads


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_equals_torch(norm_type, max_norm):
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((4, 3)), "b": rng.standard_normal(5)}
    tp = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads.values()]
    for p, g in zip(tp, grads.values()):
        p.grad = T(g)
    total = optim.clip_grad_norm_(grads, max_norm, norm_type)
    t_total = torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type)
    assert abs(total - t_total.item()) <= 1e-12 * t_total.item()
    for p, g in zip(tp, grads.values()):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=0, atol=1e-14)


def test_mse_loss_and_grad_equal_torch():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    for reduction in ("mean", "sum"):
        loss, grad = losses.mse_loss(x, y, reduction)
        xt = T(x).requires_grad_()
        lt = torch.nn.functional.mse_loss(xt, T(y), reduction=reduction)
        lt.backward()
        assert abs(loss - lt.item()) <= 1e-14
        np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("shape", [(5, 7), (7,)])
def test_cross_entropy_and_grad_equal_torch(shape):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(shape) * 30  # large logits: no overflow
    t = rng.integers(0, 7, size=shape[:-1])
    for reduction in ("mean", "sum"):
        loss, grad = losses.cross_entropy(a, t, reduction)
        at = T(a).requires_grad_()
        lt = torch.nn.functional.cross_entropy(at, torch.tensor(t), reduction=reduction)
        lt.backward()
        assert abs(loss - lt.item()) <= 1e-12 * max(1, abs(lt.item()))
        np.testing.assert_allclose(grad, at.grad.numpy(), rtol=0, atol=1e-14)


def test_loss_errors():
    with pytest.raises(ValueError, match="target must have the shape of input"):
        losses.mse_loss(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum', got 'none'"):
        losses.mse_loss(np.ones(3), np.ones(3), "none")
    with pytest.raises(TypeError, match="target must hold class indices"):
        losses.cross_entropy(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match=r"target must be class indices in \[0, 3\)"):
        losses.cross_entropy(np.ones((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"logits must be \(M, C\) with target \(M,\)"):
        losses.cross_entropy(np.ones((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="input is empty: the mean over no elements"):
        losses.mse_loss(np.ones((0, 3)), np.ones((0, 3)))
    with pytest.raises(ValueError, match="logits is empty"):
        losses.cross_entropy(np.ones((0, 3)), np.zeros(0, int))
    assert losses.mse_loss(np.ones((0, 3)), np.ones((0, 3)), "sum")[0] == 0.0
