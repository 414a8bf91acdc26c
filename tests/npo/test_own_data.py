"""A forget file and a retain file of one's own, nothing else: the README's "Your own data" row for NPO
(``--data.path DIR --data.forget_split forget --data.retain_split retain``) trains and evaluates, and what
the folder cannot evaluate is said once, at the start. Richer folders add the evaluations back."""
import json

import pytest

from zoo.errors import UserError
from zoo.npo import data
from zoo.npo.data import fictitious_authors, load_splits

from ..conftest import load_recipe

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def own(tmp_path):
    """forget.json (the last author) and retain.json (the rest), question and answer only."""
    full = fictitious_authors(n_authors=10)["full"]
    folder = tmp_path / "own"
    folder.mkdir()
    write(folder / "forget.json", full[-6:])
    write(folder / "retain.json", full[:-6])
    return folder


def test_a_forget_and_a_retain_file_alone_load_with_free_names(own):
    s = load_splits(str(own), "forget", "retain")
    assert len(s["forget"]) == 6 and len(s["retain"]) == 54
    assert s["full"] == s["retain"] + s["forget"]  # the base model's set where the folder has no full.json
    assert not any(k.endswith("_eval") for k in s)
    note = data.skipped(s, "--data.path own", retain_model=False)
    assert "forget quality" in note and "truth ratios" in note and "model utility" in note
    (own / "mine.json").write_text((own / "forget.json").read_text())
    assert len(load_splits(str(own), "mine")["retain"]) == 54  # the retain file defaults to retain.json


def test_a_missing_retain_file_is_named(own):
    (own / "retain.json").unlink()
    with pytest.raises(UserError, match=r"retain.json is missing; a folder holds at least the forget and the retain"):
        load_splits(str(own), "forget", "retain")


def test_the_readme_row_trains_and_evaluates_a_forget_and_a_retain_file(own, tmp_path, caplog):
    cli = load_recipe("npo").main(["fit", "--config", "recipes/configs/npo/tiny.yaml", *QUIET,
                                   "--trainer.default_root_dir", str(tmp_path / "logs"), "--data.path", str(own),
                                   "--data.forget_split", "forget", "--data.retain_split", "retain"])
    assert cli.trainer.global_step == 4
    m = cli.model.last_eval["metrics"]
    assert 0 < m["forget_prob"] < 1 and 0 < m["retain_prob"] < 1 and "retain_rouge" in m
    assert not {"forget_quality", "model_utility", "forget_truth_ratio"} & set(m)
    logged = (tmp_path / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "val/forget_prob" in logged and "val/retain_prob" in logged
    notes = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(notes) == 1, notes  # said once, at the start
    assert "no forget_perturbed.json: truth ratios on the forget set and forget quality are skipped" in notes[0]
    assert "model utility is skipped" in notes[0]


def test_a_perturbed_forget_file_adds_truth_ratios(own, tmp_path):
    generated = fictitious_authors(n_authors=10)
    write(own / "forget_perturbed.json", generated["forget10_perturbed"])
    s = load_splits(str(own), "forget", "retain")
    assert len(s["forget_eval"]) == 6
    note = data.skipped(s, "--data.path own", retain_model=False)
    assert "no --model.retain_model: forget quality is skipped" in note and "forget set" not in note
