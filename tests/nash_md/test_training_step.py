"""One Nash-MD step and one validation step, wired to the math: what the judge is shown and what the step
returns and logs, against the same quantities computed here on their own. The policy is moved off the
reference first (as after some training), so that the mixture, the KL and the win rate against μ differ
from what the policy alone would give: y′ is the geometric mixture's sample (not the policy's), log μ comes
from the base model as loaded (not from the policy: the KL term is not 0), and the validation win rate is
the policy's against μ (not against itself)."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from zoo.lm import left_pad, load_causal_lm, sample
from zoo.lm.objective import token_log_probs
from zoo.nash_md import NashMD
from zoo.nash_md import objective as O
from zoo.nash_md.nets import GeometricMixture

PROMPTS = ["The list type", "A function definition", "Exceptions are", "The import"]
BETA, TAU, NEW = 0.5, 0.1, 12


class Judge(nn.Module):
    """A judge that depends on both texts (longer wins) and records what it is shown."""

    kind = "bradley_terry"

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[tuple[list[str], ...]] = []

    def reward(self, prompts, responses):
        self.shown.append((list(responses),))
        return torch.tensor([len(r) / 10.0 for r in responses])

    def preference(self, prompts, y, y_prime):
        self.shown.append((list(y), list(y_prime)))
        return torch.sigmoid(torch.tensor([(len(a) - len(b)) / 10.0 for a, b in zip(y, y_prime)]))


def nash_md(loss="nash_md", lora_r=0):
    """The module with its policy moved off μ, a recording judge and its logged values recorded."""
    torch.manual_seed(0)
    model = NashMD(loss=loss, beta=BETA, tau=TAU, max_new_tokens=NEW, lora_r=lora_r, preference_model=None)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.policy.parameters():
            if p.requires_grad:
                p.add_((0.02 if lora_r else 0.05) * torch.randn(p.shape, generator=g))
    object.__setattr__(model, "judge", Judge())
    logged = {}
    model.logging_step = lambda: True
    model.log = lambda name, value, **kwargs: logged.__setitem__(name, torch.as_tensor(value).detach().float())
    return model, logged


def draw(model, net, ids, mask, generator):
    """Responses of ``net`` [B, N] and their mask, as the module samples them (temperature 1, KV cache)."""
    tok = model.tokenizer
    seq, seq_mask = sample(net, ids, mask, max_new_tokens=NEW, temperature=1.0, generator=generator,
                           eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return seq[:, ids.shape[1]:], seq_mask[:, ids.shape[1]:]


def response_log_probs(net, ids, mask, y, y_mask):
    full, full_mask = torch.cat([ids, y], 1), torch.cat([mask, y_mask], 1)
    position_ids = (full_mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        logits = net(input_ids=full, attention_mask=full_mask, position_ids=position_ids).logits
    return token_log_probs(logits, full)[:, ids.shape[1] - 1:]


def close(actual, expected):
    torch.testing.assert_close(actual.detach().float(), torch.as_tensor(expected).float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss, lora_r",
                         [("nash_md", 0), ("nash_md", 2), ("nash_md_pg", 0), ("self_play", 0), ("rlhf", 0)])
def test_one_step_samples_the_opponent_and_scores_against_the_reference(loss, lora_r):
    model, logged = nash_md(loss, lora_r)
    policy = model.policy.eval()
    reference, _ = load_causal_lm("tiny-lm")  # μ: the base model, loaded afresh
    reference.eval()
    decode = lambda t: model.tokenizer.batch_decode(t, skip_special_tokens=True)  # noqa: E731
    ids, mask = left_pad(model.tokenizer, PROMPTS)
    state = model.generator.get_state()

    g = torch.Generator()
    g.set_state(state)
    y, y_mask = draw(model, policy, ids, mask, g)
    after_y = g.get_state()
    mixed, _ = draw(model, GeometricMixture(policy, reference, BETA), ids, mask, g)
    g.set_state(after_y)
    alone, _ = draw(model, policy, ids, mask, g)
    assert decode(mixed) != decode(alone), "the test's policy should differ from the mixture"
    y_prime = mixed if loss in ("nash_md", "nash_md_pg") else alone
    logp = response_log_probs(policy, ids, mask, y, y_mask)
    ref_logp = response_log_probs(reference, ids, mask, y, y_mask)
    kl = O.sequence_kl(logp, ref_logp, y_mask).mean()
    assert kl.abs() > 0.05, "the test's policy should differ from its reference"

    policy.train()
    out = model.training_step(PROMPTS, 0)

    judge = model.judge
    if loss == "rlhf":  # y and the baseline's y′ ∼ π_θ scored in one call
        assert judge.shown == [(decode(y) + decode(y_prime),)]
        reward, baseline = judge.reward(PROMPTS, decode(y)), judge.reward(PROMPTS, decode(y_prime))
        preference = torch.sigmoid(reward - baseline)
        expected = O.rlhf_loss(logp, ref_logp, y_mask, reward, baseline, TAU).mean()
        close(logged["train/reward"], reward.mean())
    else:
        assert judge.shown == [(decode(y), decode(y_prime))]
        preference = judge.preference(PROMPTS, decode(y), decode(y_prime))
        by = O.nash_md_pg_loss if loss == "nash_md_pg" else O.nash_md_loss
        expected = by(logp, ref_logp, y_mask, preference, TAU).mean()
    close(out, expected)
    close(logged["train/loss"], expected)
    close(logged["train/preference"], preference.mean())
    close(logged["train/kl"], kl)
    close(logged["train/response_tokens"], y_mask.sum(-1).float().mean())
    assert out.requires_grad


def test_validation_compares_the_policy_with_the_reference():
    """val/win_rate is P(y ≻ y′) with y ∼ π_θ and y′ ∼ μ from the batch's fixed stream, under the judge; the
    data's own judge gives val/judge_win_rate on the same pair."""
    model, logged = nash_md()
    truth = lambda a, b: torch.tensor([float(len(x) > len(z)) for x, z in zip(a, b)])  # noqa: E731
    model._trainer = SimpleNamespace(datamodule=SimpleNamespace(judge=truth), global_rank=0)
    policy = model.policy.eval()
    decode = lambda t: model.tokenizer.batch_decode(t, skip_special_tokens=True)  # noqa: E731
    reference, _ = load_causal_lm("tiny-lm")
    ids, mask = left_pad(model.tokenizer, PROMPTS)
    g = torch.Generator().manual_seed(10_007 * (0 + 1))  # validation_step's stream for batch 0 on rank 0
    a = decode(draw(model, policy, ids, mask, g)[0])
    after_a = g.get_state()
    b = decode(draw(model, reference.eval(), ids, mask, g)[0])
    g.set_state(after_a)
    assert decode(draw(model, policy, ids, mask, g)[0]) != b, "the test's policy should differ from its reference"

    model.validation_step(PROMPTS, 0)

    assert model.judge.shown == [(a, b)]
    close(logged["val/win_rate"], model.judge.preference(PROMPTS, a, b).mean())
    close(logged["val/judge_win_rate"], truth(a, b).mean())
