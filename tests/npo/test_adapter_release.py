"""A LoRA run releases its adapter over the base (PEFT's format, base.json with the base's sha256): zoo.load
and plain PEFT give the trained model; an adapter trained over another adapter release is released as one
adapter over the first one's base (the two stacked, exactly)."""
import json

import pytest
import torch

import zoo
from zoo import hub
from zoo.errors import CheckpointError
from zoo.lm import adapter
from zoo.lm.helpers import load_causal_lm
from zoo.npo import NPO


def trained(model: NPO, seed: int) -> NPO:
    """The adapters moved off their initial B = 0, as training moves them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.model.named_parameters():
            if "lora_" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.arange(5, 37).view(2, 16)


def test_an_adapter_release_loads_by_zoo_and_by_plain_peft(tmp_path):
    from peft import PeftModel

    model = trained(NPO(base="tiny-lm", objective="finetune", lora_r=4), 0)
    expected = logits(model.model, IDS)
    hub.save(model, tmp_path / "stage1")
    names = {p.name for p in (tmp_path / "stage1").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "base.json"} <= names and "model.safetensors" not in names
    spec = json.loads((tmp_path / "stage1" / "base.json").read_text())
    assert spec["base"] == "tiny-lm" and spec["sha256"] == adapter.fingerprint(str(hub.release_dir("tiny-lm")))

    loaded = zoo.load(tmp_path / "stage1")
    assert loaded.hparams.lora_r == 0 and not hasattr(loaded.model, "peft_config")  # merged
    torch.testing.assert_close(logits(loaded.model, IDS), expected, rtol=1e-3, atol=1e-3)
    base, _ = load_causal_lm("tiny-lm")
    assert not torch.allclose(logits(base.eval(), IDS), expected, atol=1e-2)  # the adapter changes the model
    plain = PeftModel.from_pretrained(base, str(tmp_path / "stage1")).eval()
    torch.testing.assert_close(logits(plain, IDS), expected, rtol=1e-3, atol=1e-3)


def test_an_adapter_over_an_adapter_release_is_released_as_one_over_the_base(tmp_path):
    from peft import PeftModel

    hub.save(trained(NPO(base="tiny-lm", objective="finetune", lora_r=4), 0), tmp_path / "stage1")
    stage2 = trained(NPO(base=str(tmp_path / "stage1"), objective="npo", lora_r=2), 1)
    with stage2.model.disable_adapter():  # the reference π_ref: stage 1, merged
        torch.testing.assert_close(logits(stage2.model, IDS), logits(zoo.load(tmp_path / "stage1").model, IDS))
    expected = logits(stage2.model, IDS)
    hub.save(stage2, tmp_path / "stage2")
    config = json.loads((tmp_path / "stage2" / "adapter_config.json").read_text())
    assert config["r"] == 6 and config["lora_alpha"] == 6  # 4 + 2, scale 1
    assert json.loads((tmp_path / "stage2" / "base.json").read_text())["base"] == "tiny-lm"
    base, _ = load_causal_lm("tiny-lm")
    assert (logits(base.eval(), IDS) - expected).abs().max() > 1  # the two adapters move the logits by more than 1
    # equal up to float32 rounding (stage 2 trained over stage 1 merged in float32): 0.005 of the 14 they move
    torch.testing.assert_close(logits(zoo.load(tmp_path / "stage2").model, IDS), expected, rtol=1e-3, atol=1e-2)
    plain = PeftModel.from_pretrained(base, str(tmp_path / "stage2")).eval()
    torch.testing.assert_close(logits(plain, IDS), expected, rtol=1e-3, atol=1e-2)


def test_stacking_adds_the_updates():
    g = torch.Generator().manual_seed(0)
    one = {"m": (torch.randn(3, 5, generator=g), torch.randn(4, 3, generator=g))}
    two = {"m": (torch.randn(2, 5, generator=g), torch.randn(4, 2, generator=g)), "n": (torch.randn(2, 6, generator=g),
                                                                                        torch.randn(7, 2, generator=g))}
    both = adapter.stack(one, two)
    a, b = both["m"]
    torch.testing.assert_close(b @ a, one["m"][1] @ one["m"][0] + two["m"][1] @ two["m"][0])
    a, b = both["n"]
    assert a.shape == (5, 6) and b.shape == (7, 5)
    torch.testing.assert_close(b @ a, two["n"][1] @ two["n"][0])


def test_an_adapter_over_another_base_is_refused(tmp_path):
    model = trained(NPO(base="tiny-lm", objective="finetune", lora_r=4), 0)
    factors, transposed = adapter.factors_of(model.model)
    adapter.write(factors, tmp_path, "tiny-lm", transposed, "0" * 64)  # trained over other weights
    with pytest.raises(CheckpointError, match="sha256 0000000000000000"):
        load_causal_lm(str(tmp_path))
