"""One unlearning step, wired to the math: the loss and the logged values of ``training_step`` equal
zoo/npo/objective.py's functions applied to the right tensors, computed here on their own: π_ref's
log-likelihoods from the base model as loaded (not from the policy), the retain terms from the retain
batch (not from the forget batch). The policy is moved away from the reference first, as after some
unlearning, so that a reference taken from the policy would change the loss."""
import pytest
import torch

from zoo.lm import load_causal_lm
from zoo.lm.helpers import prompt_response_batch
from zoo.lm.objective import sequence_log_probs
from zoo.npo import NPO
from zoo.npo.objective import ga_loss, nll, npo_loss, npo_weight, retain_kl

BETA, LAMBDA = 0.5, 0.7


def batches(pad):
    forget = prompt_response_batch([([5, 6, 7], [8, 9, 10]), ([11, 12], [13, 14, 15, 16])], pad)
    retain = prompt_response_batch([([40, 41], [42, 43, 44, 45, 46]), ([50, 51, 52, 53], [54])], pad)
    return {"train": forget, "retain": retain}


def unlearner(objective, lora_r=0):
    """The module after setup, its policy moved off the base, its logged values recorded."""
    torch.manual_seed(0)
    model = NPO(base="tiny-lm", objective=objective, beta=BETA, retain_weight=LAMBDA, lora_r=lora_r, lora_dropout=0.0)
    model.setup("fit")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.model.parameters():
            if p.requires_grad:
                p.add_((0.01 if lora_r else 0.05) * torch.randn(p.shape, generator=g))
    logged = {}
    model.logging_step = lambda: True
    model.log = lambda name, value, **kwargs: logged.__setitem__(name, torch.as_tensor(value).detach())
    return model, logged


def logits(net, b):
    with torch.no_grad():
        return net(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits


def log_likelihood(net, b):
    return sequence_log_probs(logits(net, b), b["input_ids"], b["target_mask"]), b["target_mask"][:, 1:].sum(-1)


def close(actual, expected):
    torch.testing.assert_close(actual.detach().float(), expected.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("objective, lora_r", [("npo", 0), ("npo", 2), ("npo_rt", 0), ("npo_kl", 0),
                                               ("gd", 0), ("ga_kl", 0), ("ga", 0), ("finetune", 0)])
def test_one_step_is_the_objective_of_the_policy_the_reference_and_the_retain_batch(objective, lora_r):
    model, logged = unlearner(objective, lora_r)
    b = batches(model.tokenizer.pad_token_id)
    reference, _ = load_causal_lm("tiny-lm")  # π_ref: the model before unlearning, loaded afresh
    reference.eval()
    forget, n = log_likelihood(model.model, b["train"])
    ref_forget, _ = log_likelihood(reference, b["train"])
    assert (forget - ref_forget).abs().min() > 0.05, "the test's policy should differ from its reference"
    retain_nll = nll(*log_likelihood(model.model, b["retain"]))
    assert abs(float(retain_nll - nll(forget, n))) > 0.05, "the retain batch should differ from the forget batch"
    kl = retain_kl(logits(model.model, b["retain"]), logits(reference, b["retain"]), b["retain"]["attention_mask"])
    assert kl > 1e-3

    loss = model.training_step(b, 0)

    expected = {"finetune": nll(forget, n), "ga": ga_loss(forget, n), "gd": ga_loss(forget, n) + LAMBDA * retain_nll,
                "ga_kl": ga_loss(forget, n) + LAMBDA * kl, "npo": npo_loss(forget, ref_forget, BETA),
                "npo_rt": npo_loss(forget, ref_forget, BETA) + LAMBDA * retain_nll,
                "npo_kl": npo_loss(forget, ref_forget, BETA) + LAMBDA * kl}[objective]
    close(loss, expected)
    close(logged["train/loss"], expected)
    assert loss.requires_grad
    if objective == "finetune":
        return
    close(logged["train/forget_nll"], nll(forget, n))
    if objective.startswith("npo"):
        close(logged["train/npo_weight"], npo_weight(forget, ref_forget, BETA).mean())
    if objective in ("gd", "npo_rt"):
        close(logged["train/retain_nll"], retain_nll)
    if objective.endswith("_kl"):
        close(logged["train/retain_kl"], kl)
    retain_terms = {"gd": {"train/retain_nll"}, "npo_rt": {"train/retain_nll"}, "ga_kl": {"train/retain_kl"},
                    "npo_kl": {"train/retain_kl"}}.get(objective, set())
    assert {k for k in logged if k.startswith("train/retain")} == retain_terms


def test_npo_gradient_is_ga_weighted_by_the_reference():
    """∇L_NPO = Σ_i w_i ∇log π_θ(y_i|x_i) / B with w_i = 2σ(β(log π_θ − log π_ref)) (GA's direction, each
    answer weighted): the step's gradient, against that sum built from the fresh reference's log-likelihoods."""
    model, _ = unlearner("npo")
    b = batches(model.tokenizer.pad_token_id)
    reference, _ = load_causal_lm("tiny-lm")
    ref_forget, _ = log_likelihood(reference.eval(), b["train"])
    params = [p for p in model.parameters() if p.requires_grad]
    step = torch.autograd.grad(model.training_step(b, 0), params)
    logp = sequence_log_probs(model(b["train"]["input_ids"], b["train"]["attention_mask"]), b["train"]["input_ids"],
                              b["train"]["target_mask"])
    w = npo_weight(logp.detach(), ref_forget, BETA)
    assert (w - 1).abs().max() > 0.05, "with π_ref = π_θ every weight would be 1"
    by_hand = torch.autograd.grad((w * logp).sum() / len(w), params)
    for a, e in zip(step, by_hand):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-6)
