"""The unlearning objectives and TOFU's metrics against hand computations."""
import math

import pytest
import torch

from zoo.lm.helpers import prompt_response_batch
from zoo.lm.objective import sequence_log_probs
from zoo.npo import metrics
from zoo.npo.objective import ga_loss, nll, npo_loss, npo_weight, retain_kl, unlearning_loss


def test_npo_loss_equals_the_formula_by_hand():
    logp = torch.tensor([-10.0, -4.0])
    ref = torch.tensor([-8.0, -6.0])
    beta = 0.1
    # log-ratios −2 and +2: −(2/β)·mean(log σ(0.2), log σ(−0.2))
    by_hand = -(2 / beta) * 0.5 * (math.log(1 / (1 + math.exp(-0.2))) + math.log(1 / (1 + math.exp(0.2))))
    assert npo_loss(logp, ref, beta).item() == pytest.approx(by_hand, rel=1e-6)


def test_npo_gradient_approaches_gradient_ascent_as_beta_goes_to_zero():
    """∂L_NPO/∂ log π_θ(y_i) = w_i / B with w = 2σ(β·log-ratio) → 1: GA on the summed log-likelihood, and
    the token-mean GA loss scaled by Σ|y| / B."""
    ref = torch.tensor([-5.0, -9.0, -7.0])
    n = torch.tensor([4.0, 6.0, 5.0])
    for beta, tol in ((1.0, None), (1e-4, 1e-3)):
        logp = torch.tensor([-7.0, -6.0, -9.5], requires_grad=True)
        npo_loss(logp, ref, beta).backward()
        g_npo = logp.grad.clone()
        torch.testing.assert_close(g_npo, npo_weight(logp.detach(), ref, beta) / 3)
        logp.grad = None
        ga_loss(logp, n).backward()
        g_ga = logp.grad * n.sum() / 3  # the token-mean GA gradient, scaled to the sequence mean
        if tol is None:
            assert not torch.allclose(g_npo, g_ga, atol=1e-2)
        else:
            torch.testing.assert_close(g_npo, g_ga, atol=tol, rtol=0)


def test_the_reference_receives_no_gradient():
    logp = torch.tensor([-3.0, -2.0], requires_grad=True)
    ref = torch.tensor([-2.5, -2.5], requires_grad=True)
    npo_loss(logp, ref).backward()
    assert ref.grad is None and logp.grad is not None
    logits = torch.randn(2, 5, 7, requires_grad=True)
    ref_logits = torch.randn(2, 5, 7, requires_grad=True)
    retain_kl(logits, ref_logits, torch.ones(2, 5)).backward()
    assert ref_logits.grad is None and logits.grad is not None


def test_retain_kl_by_hand_and_zero_at_the_reference():
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.5, 0.25, 0.25])
    by_hand = sum(pi * math.log(pi / qi) for pi, qi in zip(p.tolist(), q.tolist()))  # KL(ref=p ‖ θ=q)
    kl = retain_kl(q.log().view(1, 1, 3), p.log().view(1, 1, 3), torch.ones(1, 1))
    assert kl.item() == pytest.approx(by_hand, rel=1e-5)
    x = torch.randn(2, 4, 5)
    assert retain_kl(x, x, torch.ones(2, 4)).item() == pytest.approx(0.0, abs=1e-6)
    # masked positions do not count
    y = x.clone()
    y[:, -1] += torch.randn(2, 5)
    mask = torch.ones(2, 4)
    mask[:, -1] = 0
    assert retain_kl(y, x, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_objectives_combine_their_parts():
    logp, n, ref = torch.tensor([-6.0, -4.0]), torch.tensor([3.0, 2.0]), torch.tensor([-5.0, -5.0])
    r_nll, r_kl = torch.tensor(1.5), torch.tensor(0.25)
    assert unlearning_loss("ga", logp, n).item() == pytest.approx(-2.0)  # −(10/5)
    assert unlearning_loss("gd", logp, n, retain_nll=r_nll, retain_weight=2.0).item() == pytest.approx(-2.0 + 3.0)
    assert unlearning_loss("ga_kl", logp, n, retain_kl_value=r_kl).item() == pytest.approx(-1.75)
    base = npo_loss(logp, ref, 0.1).item()
    assert unlearning_loss("npo", logp, n, ref).item() == pytest.approx(base)
    assert unlearning_loss("npo_rt", logp, n, ref, retain_nll=r_nll).item() == pytest.approx(base + 1.5)
    assert unlearning_loss("npo_kl", logp, n, ref, retain_kl_value=r_kl).item() == pytest.approx(base + 0.25)
    assert nll(logp, n).item() == pytest.approx(2.0)


def test_question_tokens_are_masked_out():
    """The answer's log-likelihood does not change with the question's tokens' probabilities, and counts
    exactly the answer tokens (not the prompt, not the padding)."""
    batch = prompt_response_batch([([5, 6, 7], [8, 9]), ([5], [8, 9, 10])], pad_token_id=0)
    assert batch["target_mask"].tolist() == [[0, 0, 0, 1, 1], [0, 1, 1, 1, 0]]
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 12)
    base = sequence_log_probs(logits, batch["input_ids"], batch["target_mask"])
    changed = logits.clone()
    changed[0, :2] += 5 * torch.randn(2, 12)  # the positions that predict question tokens 6 and 7
    changed[1, 4] += 5 * torch.randn(12)      # the position after the last token (padding)
    torch.testing.assert_close(sequence_log_probs(changed, batch["input_ids"], batch["target_mask"]), base)
    lp = torch.log_softmax(logits, -1)
    by_hand = lp[0, 2, 8] + lp[0, 3, 9]
    assert base[0].item() == pytest.approx(by_hand.item(), rel=1e-6)


def test_truth_ratio_by_hand():
    para = torch.tensor([math.log(0.5), math.log(0.1)])
    pert = torch.tensor([[math.log(0.25), math.log(0.25)], [math.log(0.2), math.log(0.05)]])
    r = metrics.truth_ratio(para, pert)
    # R = p̄(paraphrase) / geometric mean of p̄(perturbed): 0.5/0.25 = 2, 0.1/sqrt(0.01) = 1
    torch.testing.assert_close(r, torch.tensor([2.0, 1.0]))
    assert metrics.truth_ratio_score(r, forget=True) == pytest.approx((0.5 + 1.0) / 2)
    assert metrics.truth_ratio_score(r, forget=False) == pytest.approx((0.5 + 0.0) / 2)


def test_forget_quality_is_the_ks_p_value_by_hand():
    """Two samples of 3 that do not interleave: D = 1, and the exact two-sided p-value is
    P(D ≥ 1) = 2 / C(6, 3) = 0.1 (only the two fully separated orderings of the 20)."""
    assert metrics.forget_quality([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(0.1)
    # the same distribution: p-value 1
    assert metrics.forget_quality([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)
    # interleaved 1,2 | 3,4 | 5,6 split as {1,3,5} vs {2,4,6}: D = 1/3, p = 1 (every ordering has D ≥ 1/3)
    assert metrics.forget_quality([1.0, 3.0, 5.0], [2.0, 4.0, 6.0]) == pytest.approx(1.0)


def test_probability_and_model_utility_by_hand():
    gt = torch.log(torch.tensor([0.5, 0.2]))
    assert metrics.probability(gt) == pytest.approx(0.35)
    pert = torch.log(torch.tensor([[0.25, 0.25], [0.1, 0.1]]))
    assert metrics.probability(gt, pert) == pytest.approx((0.5 / 1.0 + 0.2 / 0.4) / 2)
    assert metrics.model_utility([0.5, 0.25, 1.0]) == pytest.approx(3 / (2 + 4 + 1))
    assert metrics.model_utility([0.5, 0.0, 1.0]) == 0.0


def test_rouge_l_recall_by_hand():
    # reference 4 words, longest common subsequence "cat sat mat" = 3 words: recall 3/4
    r = metrics.rouge_l_recall(["a cat sat on a mat"], ["the cat sat mat"])
    assert r.item() == pytest.approx(0.75)


def test_summarise_gives_tofu_numbers_from_item_statistics():
    half, quarter = math.log(0.5), math.log(0.25)
    item = {"gt": torch.tensor([half, half]), "para": torch.tensor([half, half]),
            "pert": torch.full((2, 2), quarter), "rouge": torch.tensor([1.0, 0.5])}
    stats = {name: dict(item) for name in ("forget", "retain", "real_authors", "world_facts")}
    out = metrics.summarise(stats, retain_ratios=torch.tensor([2.0, 2.0]))
    assert out["retain_prob"] == pytest.approx(0.5) and out["forget_rouge"] == pytest.approx(0.75)
    assert out["real_authors_prob"] == pytest.approx(0.5)  # 0.5 / (0.5 + 0.25 + 0.25)
    assert out["forget_truth_ratio"] == pytest.approx(0.5) and out["retain_truth_ratio"] == pytest.approx(0.5)
    assert out["forget_quality"] == pytest.approx(1.0)  # R = 2 for every item, as the retain model's
    assert out["model_utility"] == pytest.approx(metrics.model_utility([0.5, 0.75, 0.5] * 3))
    assert out["retain_utility"] == pytest.approx(metrics.model_utility([0.5, 0.75, 0.5]))
    stats["world_facts"]["rouge"] = torch.zeros(2)  # knows no world facts: model utility 0, retain utility kept
    out = metrics.summarise(stats, None)
    assert out["model_utility"] == 0.0 and out["retain_utility"] > 0.5 and "forget_quality" not in out
