"""The MomentumSMoE updates, routing and balance loss against hand computations and brute force."""
import math

import pytest
import torch

from zoo.momentum_smoe.nets import Experts, SMoELM, UpdateParams
from zoo.momentum_smoe.objective import (
    adam_smoe_update,
    expert_fractions,
    load_balancing_loss,
    load_entropy,
    momentum_smoe_update,
    robust_lookahead,
    robust_momentum_parameters,
    robust_momentum_smoe_update,
    smoe_update,
    top_k_routing,
)


def test_momentum_recursion_over_three_layers_by_hand():
    # f(x) = 3 − x, x_0 = 1, μ = 0.7, γ = 0.5, p_{−1} = 0:
    # t=0: f=2,    p=−2,                 x_1 = 1 + 1     = 2
    # t=1: f=1,    p=−1 + 0.7·(−2) = −2.4, x_2 = 2 + 1.2   = 3.2
    # t=2: f=−0.2, p=0.2 + 0.7·(−2.4) = −1.48, x_3 = 3.2 + 0.74 = 3.94
    x, p = torch.tensor(1.0, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    xs, ps = [], []
    for _ in range(3):
        x, p = momentum_smoe_update(x, 3 - x, p, mu=0.7, gamma=0.5)
        xs.append(float(x))
        ps.append(float(p))
    assert xs == pytest.approx([2.0, 3.2, 3.94], abs=1e-12)
    assert ps == pytest.approx([-2.0, -2.4, -1.48], abs=1e-12)


def test_mu_zero_gamma_one_is_smoe_exactly():
    g = torch.Generator().manual_seed(0)
    x, f, p = (torch.randn(4, 5, generator=g) for _ in range(3))
    x1, _ = momentum_smoe_update(x, f, p, mu=0.0, gamma=1.0)
    assert torch.equal(x1, smoe_update(x, f))


@pytest.mark.parametrize("norm", ["official", "post", "pre"])
def test_mu_zero_gamma_one_model_equals_smoe_model_bitwise(norm):
    torch.manual_seed(0)
    args = dict(vocab_size=50, n_positions=16, d_model=16, n_head=2, num_experts=4, top_k=2, d_hidden=8, dropout=0.0,
                norm=norm)
    smoe = SMoELM(["smoe"] * 3, params=UpdateParams(), **args).eval()
    mom = SMoELM(["momentum"] * 3, params=UpdateParams(mu=0.0, gamma=1.0), **args).eval()
    mom.load_state_dict(smoe.state_dict())
    ids = torch.randint(0, 50, (3, 12))
    assert torch.equal(mom(ids)[0], smoe(ids)[0])
    mom.blocks[1].params.mu = 0.7  # and momentum does change the function
    assert not torch.allclose(mom(ids)[0], smoe(ids)[0])


def _layer_norm(x, ln):
    """LayerNorm written out: (x − mean) / √(var + ε) · w + b over the last dimension (biased variance)."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / (var + ln.eps).sqrt() * ln.weight + ln.bias


@pytest.mark.parametrize("norm", ["official", "post", "pre"])
@pytest.mark.parametrize("layers", [["momentum", "momentum"], ["adam", "momentum"]])
def test_two_layer_forward_by_hand(norm, layers):
    """The whole network against the block formulas written out, with attention and f = SMoE(·) as given
    maps; LayerNorm weights are randomised so that a missing or misplaced norm shows."""
    torch.manual_seed(0)
    q = UpdateParams(mu=0.7, gamma=0.8, adam_mu=0.9, adam_beta=0.99, adam_gamma=0.5, adam_eps=1e-6)
    net = SMoELM(layers, vocab_size=40, n_positions=8, d_model=8, n_head=2, num_experts=4, top_k=2, d_hidden=6,
                 dropout=0.0, params=q, norm=norm).double().eval()
    with torch.no_grad():
        for name, t in net.named_parameters():
            if "ln" in name:
                t.copy_(torch.randn_like(t) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    ids = torch.randint(0, 40, (2, 7))
    logits, state = net(ids)

    x = net.wte.weight[ids] + net.wpe.weight[:7]
    p, adam_p, adam_m = 0.0, 0.0, 0.0
    for block, variant in zip(net.blocks, layers):
        if norm == "pre":
            x = x + block.attn(_layer_norm(x, block.ln1))
            f = block.moe(_layer_norm(x, block.ln2))[0]
        else:
            x = _layer_norm(x + block.attn(x), block.ln1)  # post-norm attention
            f = block.moe(x)[0]  # f of the un-normalised-by-this-layer stream
        if variant == "adam":
            adam_p = q.adam_mu * adam_p + (1 - q.adam_mu) * (-f)
            adam_m = q.adam_beta * adam_m + (1 - q.adam_beta) * f * f
            step = q.adam_gamma * adam_p / (adam_m + q.adam_eps).sqrt()
            p = -f + q.mu * p  # the heavy-ball state runs on through the Adam layer
        else:
            p = -f + q.mu * p
            step = q.gamma * p
        if norm == "pre":
            x = x - step
        elif norm == "post":
            x = _layer_norm(x - step, block.ln2)
        else:
            inner = -step if variant == "adam" else x - step  # the official Adam layer drops x_t
            x = _layer_norm(x + _layer_norm(inner, block.ln3), block.ln2)
    if norm == "pre":
        x = _layer_norm(x, net.ln_f)
    torch.testing.assert_close(logits, x @ net.wte.weight.T)
    # the momentum carried out of the last layer is the raw p_t = −f(x_t) + μ p_{t−1}: no norm touches it
    torch.testing.assert_close(state.p, p)
    assert not torch.allclose(state.p, _layer_norm(state.p, net.blocks[-1].ln2))
    if layers[0] == "adam":
        torch.testing.assert_close(state.adam_p, adam_p)
        torch.testing.assert_close(state.adam_m, adam_m)


def test_official_adam_block_by_hand():
    """One block of the paper's code's AdamSMoE (models.py, pre_lnorm off), its statements written out in
    its own sign convention: the layer accumulates core_out = −f,
        momentum = μ·moment + γ₂·core_out,  p = β₁ p + (1 − β₁) core_out,  v = β₂ v + (1 − β₂) core_out²,
        adam = γ₁/√(v + ε) · p + inp,  smoe_out = LN(inp − adam),
    and the transformer layer outputs norm2(h + smoe_out) = LN₂(x + LN(−γ₁ p/√(v + ε))): the Adam step is
    normalised alone before it joins the stream, not added raw to it."""
    torch.manual_seed(1)
    q = UpdateParams(mu=0.7, gamma=1.0, adam_mu=0.9, adam_beta=0.999, adam_gamma=1.0, adam_eps=1e-8)
    net = SMoELM(["adam"], vocab_size=30, n_positions=8, d_model=8, n_head=2, num_experts=4, top_k=2, d_hidden=6,
                 dropout=0.0, params=q, norm="official").double().eval()
    with torch.no_grad():
        for name, t in net.named_parameters():
            if "ln" in name:
                t.copy_(torch.randn_like(t) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    ids = torch.randint(0, 30, (2, 6))
    logits, state = net(ids)

    block = net.blocks[0]
    h = net.wte.weight[ids] + net.wpe.weight[:6]
    h = _layer_norm(h + block.attn(h), block.ln1)
    core_out = -block.moe(h)[0]
    moment, p, v = 0.0, 0.0, 0.0  # the official code starts all three at zeros_like(h)
    momentum = q.mu * moment + q.gamma * core_out
    p = q.adam_mu * p + (1 - q.adam_mu) * core_out
    v = q.adam_beta * v + (1 - q.adam_beta) * core_out**2
    adam = q.adam_gamma / torch.sqrt(v + q.adam_eps) * p + h
    smoe_out = _layer_norm(h - adam, block.ln3)
    expected = _layer_norm(h + smoe_out, block.ln2)
    torch.testing.assert_close(logits, expected @ net.wte.weight.T)
    # the state handed up: Adam's moments and the heavy-ball momentum, un-normalised
    torch.testing.assert_close(state.adam_p, p)
    torch.testing.assert_close(state.adam_m, v)
    torch.testing.assert_close(state.p, momentum)
    # and it is not the post-norm form LN₂(x + step), where the raw step (RMS ≈ 3 at the first layer) swamps x
    post = _layer_norm(h + q.adam_gamma * (-p) / torch.sqrt(v + q.adam_eps), block.ln2)
    assert not torch.allclose(logits, post @ net.wte.weight.T)


def test_official_norm_is_the_default_and_bad_norms_are_rejected():
    args = dict(vocab_size=20, n_positions=8, d_model=8, n_head=2, num_experts=4, top_k=2, d_hidden=6, dropout=0.0,
                params=UpdateParams())
    net = SMoELM(["momentum"], **args)
    assert net.blocks[0].norm == "official" and isinstance(net.ln_f, torch.nn.Identity)
    with pytest.raises(ValueError, match="--model.norm: unknown 'sandwich'"):
        SMoELM(["momentum"], norm="sandwich", **args)


def test_adam_update_over_two_layers_by_hand():
    # constant f_0 = 2, f_1 = −1; μ = 0.9, β = 0.999, γ = 1, ε = 0
    x, p, m = torch.tensor(0.0, dtype=torch.float64), 0.0, 0.0
    x, p, m = adam_smoe_update(x, torch.tensor(2.0, dtype=torch.float64), p, m, mu=0.9, beta=0.999, gamma=1.0, eps=0.0)
    assert float(p) == pytest.approx(-0.2) and float(m) == pytest.approx(0.004)
    assert float(x) == pytest.approx(0.2 / math.sqrt(0.004))
    x, p, m = adam_smoe_update(x, torch.tensor(-1.0, dtype=torch.float64), p, m, mu=0.9, beta=0.999, gamma=1.0, eps=0.0)
    assert float(p) == pytest.approx(-0.08) and float(m) == pytest.approx(0.004996)
    assert float(x) == pytest.approx(0.2 / math.sqrt(0.004) + 0.08 / math.sqrt(0.004996))


def test_robust_parameters_by_hand_and_bad_rho():
    gamma, mu, lam = robust_momentum_parameters(L=1.0, kappa=2.0, rho=0.5)
    assert (gamma, mu, lam) == pytest.approx((0.75, 0.25, 1 / 3))
    gamma, mu, lam = robust_momentum_parameters(L=4.0, kappa=4.0, rho=0.6)
    assert gamma == pytest.approx(4 * 0.16 * 1.6 / 4) and mu == pytest.approx(4 * 0.216 / 3)
    assert lam == pytest.approx(0.216 / (3 * 0.16 * 1.6))
    with pytest.raises(ValueError, match="robust_rho"):
        robust_momentum_parameters(L=1.0, kappa=2.0, rho=0.9)
    with pytest.raises(ValueError, match="robust_kappa"):
        robust_momentum_parameters(L=1.0, kappa=1.0, rho=0.0)


def test_robust_momentum_equals_the_method_of_cyrus_et_al():
    # F(x) = ½ aᵀ(x⊙x) with a ∈ [m, L]; f = −∇F. Cyrus et al.: x_{k+1} = x_k + β(x_k − x_{k−1}) − α∇F(y_k),
    # y_k = x_k + γ(x_k − x_{k−1}).
    L, kappa, rho = 2.0, 4.0, 0.6
    alpha, beta, gam = robust_momentum_parameters(L, kappa, rho)
    a = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    grad = lambda z: a * z  # noqa: E731
    x_prev = x = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    ours_x, ours_p = x.clone(), torch.zeros(3, dtype=torch.float64)
    for _ in range(6):
        y = x + gam * (x - x_prev)
        x_prev, x = x, x + beta * (x - x_prev) - alpha * grad(y)
        y_ours = robust_lookahead(ours_x, ours_p, alpha, gam)
        ours_x, ours_p = robust_momentum_smoe_update(ours_x, -grad(y_ours), ours_p, beta, alpha)
        torch.testing.assert_close(ours_x, x)
    assert x.abs().max() < 0.5  # and it does converge


def test_top_k_routing_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(9, 6, generator=g, dtype=torch.float64)
    idx, w = top_k_routing(logits, 3)
    for n in range(9):
        row = logits[n].tolist()
        best = sorted(range(6), key=lambda i: -row[i])[:3]
        z = [math.exp(row[i]) for i in best]
        assert idx[n].tolist() == best
        assert w[n].tolist() == pytest.approx([v / sum(z) for v in z])


def test_experts_output_matches_brute_force():
    torch.manual_seed(0)
    experts = Experts(num_experts=5, d_model=4, d_hidden=3).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    idx, w = top_k_routing(torch.randn(7, 5, dtype=torch.float64), 2)
    out = experts(x, idx, w)
    for n in range(7):
        expected = sum(w[n, j] * (torch.relu(x[n] @ experts.w1[e] + experts.b1[e]) @ experts.w2[e] + experts.b2[e])
                       for j, e in enumerate(idx[n].tolist()))
        torch.testing.assert_close(out[n], expected)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_load_balancing_loss_matches_the_official_gate_by_brute_force(k):
    """The paper's code's gate: fraction_expert = counts / (N·k), prob_expert = Σ_n softmax(s_n) / (N·k),
    loss = E Σ_i fraction_i · prob_i. Dividing the summed probabilities by the N·k routed slots, not by the
    N tokens, makes it 1/k of the Switch-style loss."""
    g = torch.Generator().manual_seed(2)
    N, E = 11, 4
    logits = torch.randn(N, E, generator=g, dtype=torch.float64)
    idx, _ = top_k_routing(logits, k)
    probs = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in logits.tolist()]
    loss = 0.0
    for i in range(E):
        f_i = sum(1 for n in range(N) for j in range(k) if idx[n, j] == i) / (N * k)
        P_i = sum(probs[n][i] for n in range(N)) / (N * k)
        loss += f_i * P_i
    assert float(load_balancing_loss(logits, idx)) == pytest.approx(E * loss)
    # a uniform router scores exactly 1/k, whatever the loads
    uniform_idx = torch.arange(4 * k).remainder(4).view(4, k)
    assert float(load_balancing_loss(torch.zeros(4, 4), uniform_idx)) == pytest.approx(1 / k)


def test_load_entropy():
    assert float(load_entropy(torch.tensor([5.0, 5.0, 5.0, 5.0]))) == pytest.approx(math.log(4))
    assert float(load_entropy(torch.tensor([0.0, 7.0, 0.0]))) == pytest.approx(0.0)
    assert expert_fractions(torch.tensor([[0, 1], [1, 2]]), 4).tolist() == [0.25, 0.5, 0.25, 0.0]
