"""The reference model: the model before unlearning, frozen, never in the state dict; with LoRA the same
network with its adapters off (no second copy)."""
from types import SimpleNamespace

import torch

from zoo.lm.helpers import prompt_response_batch
from zoo.npo import NPO


def batch(model):
    rows = [([5, 6, 7], [8, 9, 10]), ([11, 12], [13, 14])]
    return prompt_response_batch(rows, model.tokenizer.pad_token_id)


def step(model, b):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    logits = model(b["input_ids"], b["attention_mask"])
    logits.logsumexp(-1).mean().backward()
    opt.step()


def test_lora_reference_is_the_base_with_adapters_off():
    torch.manual_seed(0)
    model = NPO(base="tiny-lm", objective="npo", lora_r=2)
    model.setup("fit")
    b = batch(model)
    with torch.no_grad():
        before = model(b["input_ids"], b["attention_mask"])
    ref_before = model.reference_logits(b)
    torch.testing.assert_close(ref_before, before)  # LoRA's B starts at 0: the same function
    n_params = sum(p.numel() for p in model.parameters())
    step(model, b)
    with torch.no_grad():
        after = model(b["input_ids"], b["attention_mask"])
    assert not torch.allclose(after, before)
    torch.testing.assert_close(model.reference_logits(b), ref_before, rtol=0, atol=0)
    assert model._reference is None and sum(p.numel() for p in model.parameters()) == n_params


def test_full_reference_is_a_frozen_copy_outside_the_state_dict():
    torch.manual_seed(0)
    model = NPO(base="tiny-lm", objective="npo_kl")
    model.setup("fit")
    keys = set(model.state_dict())
    assert model._reference is not None and all(k.startswith("model.") for k in keys)
    b = batch(model)
    ref_before = model.reference_logits(b)
    step(model, b)
    torch.testing.assert_close(model.reference_logits(b), ref_before, rtol=0, atol=0)
    assert not any(p.requires_grad for p in model._reference.model.parameters())
    assert set(model.state_dict()) == keys


def test_unlearning_refuses_a_training_split_other_than_forget():
    import pytest

    from zoo.errors import UserError

    model = NPO(base="tiny-lm", objective="npo")
    model._trainer = SimpleNamespace(datamodule=SimpleNamespace(hparams={"train_split": "full"}))
    with pytest.raises(UserError, match="--data.train_split forget"):
        model.check_data()
