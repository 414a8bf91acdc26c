"""Bad input is rejected with an error that names the file or the flag."""
import re

import pytest
import torch

from zoo.lm import TextDataModule
from zoo.lm.data import load_corpus

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit(recipe, method, tmp_path, *args):
    return recipe(method).main(["fit", "--config", f"recipes/configs/{method}/tiny.yaml", *QUIET,
                                "--trainer.default_root_dir", str(tmp_path), *args])


def expect_one_line_error(capsys, run, pattern):
    """The recipe stops with status 2 and one line on stderr that matches ``pattern``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert re.search(pattern, err), err


@pytest.mark.parametrize("method", ["lm", "momentum_smoe"])
def test_empty_corpus_names_the_file(recipe, method, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n")
    expect_one_line_error(capsys, lambda: fit(recipe, method, tmp_path, "--data.path", str(empty)),
                      rf"--data.path {empty}: the file is empty")


def test_empty_folder_names_the_folder(tmp_path):
    (tmp_path / "corpus").mkdir()
    with pytest.raises(ValueError, match=r"--data.path .*corpus: the folder holds no text files"):
        load_corpus(str(tmp_path / "corpus"))


@pytest.mark.parametrize("method", ["lm", "momentum_smoe"])
def test_non_utf8_file_names_the_file_and_line(recipe, method, tmp_path, capsys):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("fine text\n" * 50)
    bad = folder / "b.txt"
    bad.write_bytes("good line\nsecond line caf".encode() + b"\xe9 au lait\n")
    expect_one_line_error(capsys, lambda: fit(recipe, method, tmp_path, "--data.path", str(folder)),
                      rf"--data.path {bad}: not UTF-8 text \(line 2")


@pytest.mark.parametrize("method", ["lm", "momentum_smoe"])
def test_sequence_longer_than_the_context_names_the_flags(recipe, method, tmp_path, capsys):
    expect_one_line_error(capsys, lambda: fit(recipe, method, tmp_path, "--data.block_size", "65"),
                      r"--data.block_size 65 is longer than the model's context.*--model.n_positions")


def test_smoe_forward_rejects_a_sequence_past_the_context():
    from zoo.momentum_smoe import MomentumSMoE

    model = MomentumSMoE(vocab_size=300, n_positions=8, d_model=8, n_layer=1, n_head=2, num_experts=2, d_hidden=4)
    with pytest.raises(ValueError, match="--model.n_positions 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_unknown_data_set_and_unreachable_hub(monkeypatch):
    with pytest.raises(ValueError, match=r"--data.path 'no/such/thing': no such file or folder"):
        load_corpus("no/such/thing")
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(ValueError, match=r"--data.path wikitext-103: .*point --data.path at local text"):
        load_corpus("wikitext-103")


def test_bad_fractions_and_sizes():
    with pytest.raises(ValueError, match="--data.val_fraction"):
        TextDataModule(val_fraction=0.7)
    with pytest.raises(ValueError, match="--data.block_size"):
        TextDataModule(block_size=0)


def test_text_shorter_than_a_block_names_the_split(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("".join(f"w{i}\n" for i in range(40)))
    dm = TextDataModule(path=str(short), block_size=64)
    with pytest.raises(ValueError, match=r"split has \d+ tokens, fewer than \d+ \(--data.block_size 64\)"):
        dm.setup("fit")


def tiny_gguf(path):
    """A small GGUF file of a one-layer llama: header, metadata and one tensor (the ``gguf`` package's writer)."""
    import numpy as np

    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(16)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_tensor("token_embd.weight", np.zeros((10, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("keep", [10, 100, 300])
def test_a_truncated_gguf_base_names_the_file(recipe, tmp_path, capsys, keep):
    """A cut download of a .gguf file: one line naming it, not struct.error from the parser."""
    whole = tiny_gguf(tmp_path / "whole.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:keep])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        fit(recipe, "cpt", tmp_path, "--model.base", str(cut))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) <= 2 and err[-1].endswith("--help lists every option)"), err
    assert err[0].startswith(f"error: --model.base {cut}: the GGUF file ends early or is corrupted (struct.error: "), err
