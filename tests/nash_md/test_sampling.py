"""The geometric mixture sampled with the KV cache equals sampling it without, token for token."""
import copy

import torch

from zoo.lm import left_pad, load_causal_lm, sample
from zoo.nash_md.nets import AdapterDisabled, GeometricMixture
from zoo.nash_md.objective import geometric_mixture_logits


def sample_without_cache(policy, reference, beta, ids, mask, n, generator):
    """The mixture sampled the slow way: both models run on the whole sequence for every new token."""
    for _ in range(n):
        position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
        z = policy(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits[:, -1]
        z_ref = reference(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits[:, -1]
        probs = geometric_mixture_logits(z, z_ref, beta).softmax(-1)
        nxt = torch.multinomial(probs, 1, generator=generator)
        ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    return ids


def models():
    policy, tokenizer = load_causal_lm("tiny-lm")
    reference = copy.deepcopy(policy)
    with torch.no_grad():  # a policy that differs from the reference
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return policy.eval(), reference.eval(), tokenizer


def test_mixture_sampling_with_the_cache_equals_sampling_without_it():
    policy, reference, tokenizer = models()
    ids, mask = left_pad(tokenizer, ["The list type", "A function definition is an executable statement", "Exceptions"])
    for beta in (0.0, 0.125, 0.5, 1.0):
        cached, _ = sample(GeometricMixture(policy, reference, beta), ids, mask, max_new_tokens=12,
                           generator=torch.Generator().manual_seed(3))
        slow = sample_without_cache(policy, reference, beta, ids, mask, 12, torch.Generator().manual_seed(3))
        assert torch.equal(cached, slow), f"β={beta}"
    # β = 0 is the policy, β = 1 the reference (which samples otherwise than the policy from the same stream)
    def draw(model):
        return sample(model, ids, mask, max_new_tokens=12, generator=torch.Generator().manual_seed(3))[0]

    alone, ref_alone = draw(policy), draw(reference)
    assert not torch.equal(alone, ref_alone)
    assert torch.equal(draw(GeometricMixture(policy, reference, 0.0)), alone)
    assert torch.equal(draw(GeometricMixture(policy, reference, 1.0)), ref_alone)


def test_the_reference_of_a_lora_policy_is_the_base_with_adapters_off():
    from zoo.lm import add_lora

    base, tokenizer = load_causal_lm("tiny-lm")
    base_copy = copy.deepcopy(base).eval()
    policy = add_lora(base, r=4).eval()
    with torch.no_grad():  # move the adapters off zero so the policy differs from the base
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.add_(0.1)
    ids = torch.arange(10).view(1, 10) + 20
    ref_logits = AdapterDisabled(policy)(input_ids=ids).logits
    torch.testing.assert_close(ref_logits, base_copy(input_ids=ids).logits)
    assert not torch.allclose(policy(input_ids=ids).logits, ref_logits)
