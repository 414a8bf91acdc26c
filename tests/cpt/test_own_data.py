"""A folder of one's own: the README's "Your own data" row for CPT trains on it and writes the drawn
context where a person can read it (the run's hparams.yaml), and fine-tuning the cpt-tiny-sst2 release on
it draws a new context from the folder (the release's k, its templates and the δ of its template tokens
kept), says so once, and reports any error in one line."""
import json

import pytest
import torch
import yaml

import zoo

from tests.conftest import SHARED_DATA, load_recipe

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.num_sanity_val_steps", "0", "--trainer.limit_val_batches", "1"]
WORDS = ["fine", "dull", "bright", "slow", "warm", "cold", "lively", "flat", "sharp", "vague", "kind", "grim"]


@pytest.fixture
def folder(tmp_path):
    """train.jsonl (30 short reviews) and test.jsonl (6), labels "0" and "1"."""
    root = tmp_path / "mine"
    root.mkdir()
    rows = [{"text": f"a {w} film number {i}", "label": str(i % 2)} for i, w in enumerate(WORDS * 3)][:30]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "test.jsonl").write_text("".join(json.dumps({"text": f"a {w} show", "label": str(i % 2)}) + "\n"
                                             for i, w in enumerate(WORDS[:6])))
    return root


def texts_of(folder):
    return {json.loads(x)["text"] for x in (folder / "train.jsonl").read_text().splitlines()}


def run(tmp_path, *args):
    return load_recipe("cpt").main(["fit", *QUIET, "--trainer.default_root_dir", str(tmp_path / "logs"),
                                    "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                                    "--data.val_size", "4", *args])


def test_the_readme_row_trains_on_a_folder_and_writes_its_context(folder, tmp_path):
    cli = run(tmp_path, "--data.path", str(folder), "--data.label_map", '{"0": " no", "1": " yes"}', "--data.k", "8")
    assert cli.trainer.global_step == 2
    run_dir = tmp_path / "logs" / "version_0"
    assert "val/acc" in (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    written = yaml.safe_load((run_dir / "hparams.yaml").read_text())
    assert len(written["examples"]) == 8 and {t for t, _ in written["examples"]} <= texts_of(folder)
    assert written["examples"] == [list(e) for e in cli.model.hparams.examples]
    assert written["label_words"] == [" no", " yes"]


def test_fine_tuning_the_release_on_a_folder_draws_its_context_from_the_folder(folder, tmp_path, caplog):
    release = zoo.load("cpt-tiny-sst2")
    cli = run(tmp_path, "--model.init_from", "cpt-tiny-sst2", "--data.path", str(folder),
              "--data.label_map", '{"0": " bad", "1": " good"}')
    examples = cli.model.hparams.examples
    assert len(examples) == len(release.hparams.examples) == 16  # the release's k
    assert {t for t, _ in examples} <= texts_of(folder) and {w for _, w in examples} <= {" bad", " good"}
    assert cli.model.hparams.label_words == [" bad", " good"]
    notes = [r.getMessage() for r in caplog.records if "context" in r.getMessage()]
    assert notes == [f"drew a new context of 16 examples from {folder}; the release's own context is not used "
                     "(the δ of its template tokens carries over, the δ of its texts does not)"], notes
    written = yaml.safe_load((tmp_path / "logs" / "version_0" / "hparams.yaml").read_text())
    assert written["examples"] == [list(e) for e in examples]
    cli = run(tmp_path, "--model.init_from", "cpt-tiny-sst2", "--data.path", str(folder),
              "--data.label_map", '{"0": " bad", "1": " good"}', "--data.k", "4", "--model.examples", "null")
    assert len(cli.model.hparams.examples) == 4  # --data.k, where given, and --model.examples null is no error


def test_a_release_that_does_not_fit_is_refused_in_one_short_line(folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run(tmp_path, "--model.init_from", "cpt-tiny-sst2", "--model.method", "lora", "--data.path", str(folder),
            "--data.label_map", '{"0": " bad", "1": " good"}')
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: cpt-tiny-sst2: "), err
    assert len(err) < 600 and "method 'cpt' (release) vs 'lora' (this model)" in err, err


def test_the_delta_of_template_tokens_carries_over_by_example_slot():
    """Old context: example 0 = [t=1: 7][t=2: 20 21][t=3: 8][t=4: 30], example 1 = [9 | 22 | 8 | 31]; new
    context: example 0 has other text (23), example 1 the same text (22) as the old example 1, and there is a
    third example. δ moves where a token is the same token in the same role of the same example slot."""
    from zoo.cpt.context import transfer_delta

    old_ids = torch.tensor([7, 20, 21, 8, 30, 0, 9, 22, 8, 31, 0])
    old_types = torch.tensor([1, 2, 2, 3, 4, 0, 5, 6, 7, 8, 0])
    old_delta = torch.arange(11, dtype=torch.float).unsqueeze(1).repeat(1, 2) + 1
    new_ids = torch.tensor([7, 23, 8, 30, 0, 9, 22, 8, 31, 0, 7, 24, 8, 30, 0])
    new_types = torch.tensor([1, 2, 3, 4, 0, 5, 6, 7, 8, 0, 9, 10, 11, 12, 0])
    new = transfer_delta(old_ids, old_types, old_delta, new_ids, new_types)
    expected = torch.zeros(15)
    expected[0], expected[2] = 1, 4  # example 0's templates; its text differs
    expected[5], expected[6], expected[7] = 7, 8, 9  # example 1: templates and the same text
    assert torch.equal(new, expected.unsqueeze(1).repeat(1, 2))  # example 2 had no slot in the old context


@pytest.mark.skipif(not (SHARED_DATA / "sentence-classification" / "sst2").is_dir(), reason="needs the shared SST-2 copy")
def test_fine_tuning_the_release_on_its_own_data_keeps_its_context_and_all_of_delta(tmp_path, caplog):
    """The release's own data, k and draw seed draw its own context again: every δ carries over (lr 0: the
    step moves nothing, and the projection after it rounds δ by at most a few 1e-8)."""
    release = zoo.load("cpt-tiny-sst2")
    cli = run(tmp_path, "--config", "recipes/configs/cpt/sst2.yaml", "--model.init_from", "cpt-tiny-sst2",
              "--data.path", str(SHARED_DATA / "sentence-classification" / "sst2"), "--model.lr", "0",
              "--trainer.max_steps", "1", "--trainer.val_check_interval", "1")
    assert [list(e) for e in cli.model.hparams.examples] == [list(e) for e in release.hparams.examples]
    assert any("drew the release's own context again (16 examples" in r.getMessage() for r in caplog.records)
    torch.testing.assert_close(cli.model.prompt().delta_embedding.weight.detach(),
                               release.prompt().delta_embedding.weight, rtol=1e-5, atol=1e-6)
