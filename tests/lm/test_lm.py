"""The language-model core: tokenizer, data splits, log-probabilities, KV-cache sampling, LoRA, HF format."""
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

import zoo
from zoo import hub
from zoo.lm import CausalLM, TextDataModule, add_lora, left_pad, sample, sequence_log_probs, train_bpe
from zoo.lm.data import Batches, embedded_corpus, split_text, windows, word_swap

from ..conftest import ROOT, SHARED_DATA

TEXT = "The quick brown fox jumps over the lazy dog.\nPython's pydoc ships English text.\n" * 40


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe([TEXT, embedded_corpus()[:50_000]], vocab_size=400)


@pytest.fixture(scope="module")
def tiny_gpt2():
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=400, n_positions=32, n_embd=16, n_layer=2, n_head=2, pad_token_id=1)
    return GPT2LMHeadModel(cfg).eval()


def test_tokenizer_round_trip_and_autotokenizer(tokenizer, tmp_path):
    text = "naïve café — 日本語, tabs\tand  spaces\n\nand emoji 🙂 end"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert len(tokenizer) <= 400 and len(ids) < len(text.encode())  # merges were learned
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(text)["input_ids"] == ids and loaded.decode(ids) == text
    assert loaded.eos_token == "<|endoftext|>" and loaded.pad_token == "<|pad|>"


def test_splits_never_overlap_and_windows_tile_the_tokens():
    text = "".join(f"line {i}\n" for i in range(200))
    parts = split_text(text, 0.1, 0.05)
    assert "".join(parts.values()) == text
    lines = {k: set(v.splitlines()) for k, v in parts.items()}
    assert not (lines["train"] & lines["val"]) and not (lines["train"] & lines["test"]) and not (lines["val"] & lines["test"])
    assert len(lines["val"]) == 20 and len(lines["test"]) == 10
    w = windows(list(range(21)), 5)
    assert w.tolist() == [[0, 1, 2, 3, 4, 5], [5, 6, 7, 8, 9, 10], [10, 11, 12, 13, 14, 15], [15, 16, 17, 18, 19, 20]]


def test_datamodule_on_the_embedded_corpus_and_a_folder_of_splits(tmp_path):
    dm = TextDataModule(block_size=32, batch_size=4)
    dm.setup("fit")
    assert set(dm.splits) == {"train", "val", "test"} and len(dm.tokenizer) == 4096
    assert dm.splits["train"].ndim == 1 and len(dm.splits["val"]) > 33 and len(dm.splits["test"]) > 33
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (4, 33) and batch.dtype == torch.long
    # a folder of split files (WikiText's names) is used as given
    for split in ("train", "valid", "test"):
        (tmp_path / f"wiki.{split}.tokens").write_text(TEXT if split == "train" else TEXT[:400])
    dm = TextDataModule(path=str(tmp_path), block_size=8, batch_size=2, tokenizer=None)
    dm.setup("fit")
    assert len(dm.splits["val"]) == len(dm.splits["test"]) > 9


def shared_text(tmp_path):
    """../shared/data/text/tinyshakespeare.txt where the checkout has it beside, else generated text."""
    for root in (SHARED_DATA, ROOT.parents[1] / "shared" / "data"):
        if (root / "text" / "tinyshakespeare.txt").exists():
            return root / "text" / "tinyshakespeare.txt"
    path = tmp_path / "generated.txt"
    path.write_text("".join(f"Line {i}: the {i % 7} brown foxes jumped over {i % 5} dogs.\n" for i in range(3000)))
    return path


def test_text_file_and_word_swap(tmp_path):
    path = shared_text(tmp_path)
    dm = TextDataModule(path=str(path), block_size=64, batch_size=8, attack_rate=0.1)
    dm.setup("fit")
    assert {"val_attacked", "test_attacked"} <= set(dm.splits)
    val, attacked = dm.val_dataloader()
    assert isinstance(val, Batches) and isinstance(attacked, Batches)
    swapped = word_swap("a b c d e f g h i j " * 100, 0.1, seed=0)
    share = swapped.split().count("AAA") / 1000
    assert 0.06 < share < 0.14 and word_swap("x y z", 0.0) == "x y z"


def test_batches_resume_mid_epoch_and_reshuffle_per_epoch():
    tokens = torch.arange(101)
    a = Batches(tokens, block_size=4, batch_size=3, shuffle=True, seed=5)
    first = [b.clone() for b in a]
    second = [b.clone() for b in a]
    assert len(first) == 8 and first[0].shape == (3, 5)
    assert all(torch.equal(w[:, 1:], w[:, :-1] + 1) for w in first)  # contiguous windows of the stream
    assert not all(torch.equal(x, y) for x, y in zip(first, second))  # a new offset and order per epoch
    b = Batches(tokens, 4, 3, shuffle=True, seed=5)
    it = iter(b)
    next(it), next(it)
    state = b.state_dict()
    c = Batches(tokens, 4, 3, shuffle=True, seed=5)
    c.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(list(c), first[2:]))
    ev = Batches(tokens, 4, 3, shuffle=False, drop_last=False)
    assert torch.cat(list(ev)).tolist() == windows(tokens.tolist(), 4).tolist()
    r0 = Batches(tokens, 4, 2, shuffle=False, rank=0, world_size=2)
    r1 = Batches(tokens, 4, 2, shuffle=False, rank=1, world_size=2)
    starts = [int(w[0]) for w in torch.cat([*r0, *r1])]
    assert sorted(starts) == list(range(0, 96, 4))  # the ranks share the windows without overlap


def test_sequence_log_probs_match_brute_force(tiny_gpt2):
    ids = torch.randint(0, 400, (3, 10), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(3, 10, dtype=torch.long)
    mask[0, 4:] = 1
    mask[1, 1:] = 1
    mask[2, 7:9] = 1
    with torch.no_grad():
        logits = tiny_gpt2(ids).logits
        got = sequence_log_probs(logits, ids, mask)
        for b in range(3):
            expected = 0.0
            for t in range(1, 10):
                if mask[b, t]:
                    prefix_logits = tiny_gpt2(ids[b:b + 1, :t]).logits[0, -1]
                    expected += torch.log_softmax(prefix_logits, -1)[ids[b, t]].item()
            assert got[b].item() == pytest.approx(expected, abs=1e-4)
        avg = sequence_log_probs(logits, ids, mask, average=True)
        assert avg[0].item() == pytest.approx(got[0].item() / 6, abs=1e-5)


def test_kv_cache_sampling_matches_recomputation_and_padding(tiny_gpt2, tokenizer):
    prompts = ["The quick brown", "Python"]
    ids, mask = left_pad(tokenizer, prompts)
    out, out_mask = sample(tiny_gpt2, ids, mask, max_new_tokens=6, temperature=0)
    assert out.shape == (2, ids.shape[1] + 6) and out_mask[:, -6:].all()
    for b, p in enumerate(prompts):  # greedy with the cache = greedy by full recomputation, unpadded
        seq = torch.tensor([tokenizer(p)["input_ids"]])
        with torch.no_grad():
            for _ in range(6):
                seq = torch.cat([seq, tiny_gpt2(seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
        assert out[b, -6:].tolist() == seq[0, -6:].tolist()
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1, _ = sample(tiny_gpt2, ids, mask, max_new_tokens=5, temperature=1.0, top_k=20, generator=g1)
    s2, _ = sample(tiny_gpt2, ids, mask, max_new_tokens=5, temperature=1.0, top_k=20, generator=g2)
    assert torch.equal(s1, s2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        sample(tiny_gpt2, ids, mask, max_new_tokens=40)


def test_lora_trains_only_adapters(tiny_gpt2):
    import copy
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*fan_in_fan_out")  # GPT-2's Conv1D is declared: no correction to warn of
        model = add_lora(copy.deepcopy(tiny_gpt2), r=2)
    assert model.peft_config["default"].fan_in_fan_out
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    lm = CausalLM(n_positions=32, n_embd=16, n_layer=1, n_head=2, vocab_size=300, lora_r=2)
    assert all("lora_" in n for n, p in lm.named_parameters() if p.requires_grad)


def test_hf_save_load_identical_logits(tmp_path, tokenizer):
    torch.manual_seed(0)
    lm = CausalLM(vocab_size=400, n_positions=32, n_embd=16, n_layer=2, n_head=2).eval()
    lm.tokenizer = tokenizer
    hub.save(lm, tmp_path / "rel")
    x = lm.example_input_array
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "rel").eval()
    back = zoo.load(tmp_path / "rel")
    with torch.no_grad():
        assert torch.equal(hf(x).logits, lm(x))
        assert torch.equal(back(x), lm(x))
    assert AutoTokenizer.from_pretrained(tmp_path / "rel")("fox")["input_ids"] == tokenizer("fox")["input_ids"]
    # any HF causal LM directory is a base
    based = CausalLM(base=str(tmp_path / "rel")).eval()
    with torch.no_grad():
        assert torch.equal(based(x), lm(x))
    assert based.tokenizer is not None


def test_learning_lowers_validation_perplexity(tmp_path, recipe):
    args = ["fit", "--config", "recipes/configs/lm/tiny.yaml", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.max_steps", "150", "--trainer.val_check_interval", "150", "--trainer.limit_val_batches", "8",
            "--model.lr", "0.01", "--model.warmup_steps", "10", "--data.batch_size", "8",
            "--checkpoint.every_n_train_steps", "1000"]
    cli = recipe("lm").main(args)
    model, dm = cli.model, cli.datamodule
    model.eval()
    fresh = CausalLM(**{k: v for k, v in model.hparams.items() if k != "init_from" and not k.startswith("_")}).eval()
    from torchmetrics.text import Perplexity

    def ppl(m):
        metric = Perplexity()
        with torch.no_grad():
            for i, batch in enumerate(dm.val_dataloader()):
                if i < 8:
                    metric.update(m(batch)[:, :-1], batch[:, 1:])
        return float(metric.compute())

    before, after = ppl(fresh), ppl(model)
    assert after < 0.25 * before, (before, after)


def test_tiny_lm_release_loads_as_base_and_init_from():
    x = torch.arange(12).view(2, 6)
    released = zoo.load("tiny-lm")
    hf = AutoModelForCausalLM.from_pretrained(hub.CHECKPOINTS / "tiny-lm").eval()
    based = CausalLM(base="tiny-lm").eval()
    hp = {k: v for k, v in released.hparams.items() if k not in ("base", "lora_r", "init_from")}
    tuned = CausalLM(**hp, init_from="tiny-lm")
    assert tuned.tokenizer is not None and len(tuned.tokenizer) == len(released.tokenizer)
    tuned.setup("fit")  # what fit does first: the release's weights, in place
    tuned.eval()
    with torch.no_grad():
        assert torch.equal(based(x), released(x)) and torch.equal(hf(x).logits, released(x))
        assert torch.equal(tuned(x), released(x))
