"""StableAdamW against a hand-written reference, state round trips, no-decay groups, clipping."""

import copy
import math

import pytest
import torch
from torch import nn

from twofold.train.optim import StableAdamW, build_optimizer, clip_grad_norm, param_groups, set_lr
from twofold.train.recipe import OptimizerConfig


def reference_steps(p0, grads, lr, beta1, beta2, eps, wd, max_lr):
    """StableAdamW written the other way round: Adafactor's debiased betas, plain floats.

    β̂_t = β (1 − β^{t−1}) / (1 − β^t) makes the running averages unbiased directly.
    Returns the parameters after each step and whether the update was clipped.
    """
    p, m, v = list(p0), [0.0] * len(p0), [0.0] * len(p0)
    history = []
    for t, g in enumerate(grads, start=1):
        b1 = beta1 * (1 - beta1 ** (t - 1)) / (1 - beta1**t)
        b2 = beta2 * (1 - beta2 ** (t - 1)) / (1 - beta2**t)
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
        rms = math.sqrt(sum(gi * gi / max(vi, eps * eps) for gi, vi in zip(g, v)) / len(g))
        step_lr = lr / max(1.0, rms)
        p = [pi * (1 - wd * step_lr / max_lr) - step_lr * mi / (math.sqrt(vi) + eps)
             for pi, mi, vi in zip(p, m, v)]
        history.append((list(p), rms > 1))
    return history


def test_matches_reference_including_update_clipping():
    torch.manual_seed(1)
    p0 = torch.randn(6, dtype=torch.float64)
    grads = [torch.randn(6, dtype=torch.float64) * 0.01 for _ in range(4)]
    grads.append(torch.randn(6, dtype=torch.float64) * 10.0)  # a spike: the update must be clipped
    grads.append(torch.randn(6, dtype=torch.float64) * 0.01)
    settings = dict(lr=1e-2, beta1=0.9, beta2=0.98, eps=1e-6, wd=1e-3, max_lr=2e-2)
    expected = reference_steps(p0.tolist(), [g.tolist() for g in grads], **settings)
    assert any(clipped for _, clipped in expected)

    param = nn.Parameter(p0.clone())
    opt = StableAdamW([param], lr=1e-2, betas=(0.9, 0.98), eps=1e-6, weight_decay=1e-3, max_lr=2e-2)
    for g, (want, _) in zip(grads, expected):
        param.grad = g.clone()
        opt.step()
        assert param.detach().tolist() == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_clipping_shrinks_the_step_against_adamw():
    torch.manual_seed(2)
    grads = [torch.randn(8) * 0.01 for _ in range(3)] + [torch.randn(8) * 100]
    results = []
    for make in (lambda p: StableAdamW([p], lr=0.1, betas=(0.9, 0.98), eps=1e-8),
                 lambda p: torch.optim.AdamW([p], lr=0.1, betas=(0.9, 0.98), eps=1e-8, weight_decay=0)):
        param = nn.Parameter(torch.zeros(8))
        opt = make(param)
        for g in grads:
            before = param.detach().clone()
            param.grad = g.clone()
            opt.step()
        results.append((param.detach() - before).norm().item())
    # v̂ after the spike ≈ 0.26 g², so RMS(g²/v̂) ≈ 2: StableAdamW's step is about half of AdamW's.
    assert results[0] < results[1] / 1.5


def test_first_step_equals_adam():
    # On step 1, v̂ = g², so RMS(g²/v̂) = 1 and nothing is clipped.
    g = torch.randn(10)
    a, b = nn.Parameter(torch.ones(10)), nn.Parameter(torch.ones(10))
    a.grad, b.grad = g.clone(), g.clone()
    StableAdamW([a], lr=0.01, eps=1e-8).step()
    torch.optim.AdamW([b], lr=0.01, eps=1e-8, weight_decay=0).step()
    torch.testing.assert_close(a, b)


def test_weight_decay_is_decoupled_from_the_lr_size():
    # Zero gradient: only the decay acts, θ ← θ (1 − wd · lr / max_lr).
    param = nn.Parameter(torch.full((3,), 2.0))
    opt = StableAdamW([param], lr=1e-3, weight_decay=0.1, max_lr=4e-3)
    param.grad = torch.zeros(3)
    opt.step()
    torch.testing.assert_close(param.detach(), torch.full((3,), 2.0 * (1 - 0.1 * 0.25)))


def model_with_everything():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Embedding(11, 4), nn.LayerNorm(4), nn.Linear(4, 4), nn.Linear(4, 11, bias=True))
    model[3].weight = model[0].weight  # tied, as the vocab projection is
    return model


def test_no_weight_decay_on_norms_and_biases():
    model = model_with_everything()
    decay, keep = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "2.weight"]
    assert sorted(names[id(p)] for p in keep["params"]) == ["1.bias", "1.weight", "2.bias", "3.bias"]
    assert (decay["weight_decay"], keep["weight_decay"]) == (0.01, 0.0)


def run(opt, model, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, 11, (5,), generator=generator)
        opt.zero_grad()
        model(ids).sum().backward()
        opt.step()


@pytest.mark.parametrize("name", ["stable_adamw", "adamw"])
def test_state_dict_round_trip_continues_identically(name):
    config = OptimizerConfig(name=name, lr=1e-2, weight_decay=1e-2)
    model = model_with_everything()
    opt = build_optimizer(model, config)
    run(opt, model, 3, seed=0)
    twin = copy.deepcopy(model)
    twin_opt = build_optimizer(twin, config)
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    run(opt, model, 2, seed=1)
    run(twin_opt, twin, 2, seed=1)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_build_optimizer_and_set_lr():
    model = model_with_everything()
    config = OptimizerConfig(lr=3e-3, betas=(0.8, 0.95), eps=1e-7, weight_decay=3e-4)
    opt = build_optimizer(model, config, peak_lr=1.5e-3)
    assert isinstance(opt, StableAdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = [(sorted(names[id(p)] for p in g["params"]), g["weight_decay"], g["lr"], g["max_lr"], g["betas"], g["eps"])
              for g in opt.param_groups]
    assert groups == [(["0.weight", "2.weight"], 3e-4, 1.5e-3, 1.5e-3, (0.8, 0.95), 1e-7),
                      (["1.bias", "1.weight", "2.bias", "3.bias"], 0.0, 1.5e-3, 1.5e-3, (0.8, 0.95), 1e-7)]
    set_lr(opt, 1e-4, peak=2e-3)
    assert all(g["lr"] == 1e-4 and g["max_lr"] == 2e-3 for g in opt.param_groups)
    adamw = build_optimizer(model, OptimizerConfig(name="adamw", lr=2e-3, weight_decay=0.1))
    assert isinstance(adamw, torch.optim.AdamW)
    got = [(len(g["params"]), g["weight_decay"], g["lr"], g["betas"], g["eps"]) for g in adamw.param_groups]
    assert got == [(2, 0.1, 2e-3, (0.9, 0.98), 1e-6), (4, 0.0, 2e-3, (0.9, 0.98), 1e-6)]  # not torch's defaults


def test_grad_clipping():
    model = nn.Linear(3, 1, bias=False)
    model.weight.grad = torch.tensor([[3.0, 4.0, 0.0]])
    assert clip_grad_norm(model, None).item() == pytest.approx(5.0)
    assert model.weight.grad.norm().item() == pytest.approx(5.0)
    assert clip_grad_norm(model, 1.0).item() == pytest.approx(5.0)  # the norm before clipping
    assert model.weight.grad.norm().item() == pytest.approx(1.0, rel=1e-4)


def test_defaults_and_invalid_settings():
    param = nn.Parameter(torch.zeros(2))
    assert {k: StableAdamW([param]).defaults[k] for k in ("lr", "eps", "max_lr")} == {"lr": 1e-3, "eps": 1e-6,
                                                                                          "max_lr": 1e-3}
    StableAdamW([param], betas=(0.0, 0.0))  # beta 0 is allowed
    for bad in (dict(lr=0.0), dict(eps=0.0), dict(weight_decay=-0.1), dict(betas=(1.0, 0.9)), dict(betas=(0.9, -0.1)),
                dict(betas=(0.9, 1.5))):
        with pytest.raises(ValueError, match="invalid StableAdamW"):
            StableAdamW([param], **bad)


def test_bf16_weights_get_fp32_moments_and_arithmetic():
    torch.manual_seed(5)
    p32 = nn.Parameter(torch.randn(16))
    p16 = nn.Parameter(p32.detach().to(torch.bfloat16))
    grads = [torch.randn(16) for _ in range(3)]
    opt32 = StableAdamW([nn.Parameter(p16.detach().float())], lr=1e-2, weight_decay=0.1)
    opt16 = StableAdamW([p16], lr=1e-2, weight_decay=0.1)
    for g in grads:
        opt32.param_groups[0]["params"][0].grad = g.clone()
        p16.grad = g.to(torch.bfloat16)
        opt32.step()
        opt16.step()
        ref = opt32.param_groups[0]["params"][0]
        ref.data.copy_(ref.data.to(torch.bfloat16).float())  # the bf16 weight is what the next step starts from
    state = opt16.state[p16]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float32 and p16.dtype == torch.bfloat16
    assert torch.equal(p16.detach().float(), opt32.param_groups[0]["params"][0].detach())


def test_set_lr_without_a_peak_keeps_max_lr():
    opt = build_optimizer(model_with_everything(), OptimizerConfig(lr=3e-3))
    set_lr(opt, 1e-4)
    assert all(g["lr"] == 1e-4 and g["max_lr"] == 3e-3 for g in opt.param_groups)


@pytest.mark.parametrize("scale", [1e-5, 1e-7])  # v̂ just above eps², and below it (the floor acts)
def test_the_second_moment_floor_is_eps_squared(scale):
    torch.manual_seed(6)
    p0 = torch.randn(4, dtype=torch.float64)
    grads = [torch.zeros(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64) * scale]
    expected = reference_steps(p0.tolist(), [g.tolist() for g in grads], lr=1e-2, beta1=0.9, beta2=0.98,
                               eps=1e-6, wd=0.0, max_lr=1e-2)
    param = nn.Parameter(p0.clone())
    opt = StableAdamW([param], lr=1e-2, betas=(0.9, 0.98), eps=1e-6)
    for g, (want, _) in zip(grads, expected):
        param.grad = g.clone()
        opt.step()
        assert param.detach().tolist() == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert expected[-1][1] == (scale == 1e-5)  # clipped only while v̂ is above the floor


def test_update_clipping_is_per_tensor_over_ten_steps():
    """Foreach over a group of tensors: each tensor's update is clipped by its own RMS (one spikes,
    one does not), and every tensor follows the reference to rtol 1e-6 over ten steps."""
    torch.manual_seed(3)
    p0 = [torch.randn(5, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64), torch.randn(4)]
    grads = [[torch.randn_like(p) * 0.01 for p in p0] for _ in range(10)]
    for g in grads[4:6]:
        g[0] *= 1000.0  # only the first tensor spikes
    params = [nn.Parameter(p.clone()) for p in p0]
    opt = StableAdamW(params, lr=1e-2, betas=(0.9, 0.98), eps=1e-6, weight_decay=1e-3, max_lr=2e-2)
    for step in grads:
        for param, g in zip(params, step):
            param.grad = g.clone()
        opt.step()
    for k, (param, start) in enumerate(zip(params, p0)):
        expected = reference_steps(start.flatten().tolist(), [step[k].flatten().tolist() for step in grads],
                                   lr=1e-2, beta1=0.9, beta2=0.98, eps=1e-6, wd=1e-3, max_lr=2e-2)
        assert expected[4][1] == (k == 0)  # the spike: clipped in its own tensor only
        assert param.detach().flatten().tolist() == pytest.approx(expected[-1][0], rel=1e-6, abs=1e-9)


def test_adamw_is_fused_where_the_parameters_are_on_a_gpu(monkeypatch):
    model = nn.Linear(3, 2)
    config = OptimizerConfig(name="adamw", lr=1e-3)
    assert not build_optimizer(model, config).defaults["fused"]  # CPU parameters: torch's default path
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    assert build_optimizer(model, config).defaults["fused"] is True
