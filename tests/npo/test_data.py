"""TOFU-format data: the embedded set, the real files where present, and bad input rejected clearly."""
import json

import pytest

from zoo.errors import UserError
from zoo.npo.data import QABatches, fictitious_authors, load_splits, write_embedded

from ..conftest import SHARED_DATA

TOFU = SHARED_DATA / "tofu"


def test_the_embedded_set_is_deterministic_and_shaped_like_tofu():
    a, b = fictitious_authors(), fictitious_authors()
    assert a == b
    assert len(a["full"]) == 600 and len(a["forget01"]) == 6 and len(a["forget10"]) == 60
    assert a["forget10"] == a["full"][-60:] and a["retain90"] == a["full"][:-60]
    assert a["forget05"] == a["forget10"][-30:]  # nested, as TOFU's forget splits are
    r = a["forget10_perturbed"][0]
    assert set(r) == {"question", "answer", "paraphrased_answer", "perturbed_answer"} and len(r["perturbed_answer"]) == 5
    assert r["paraphrased_answer"] != r["answer"] and r["answer"] not in r["perturbed_answer"]
    splits = load_splits(None, "forget05")  # passes every check
    assert len(splits["forget"]) == 30 and len(splits["retain"]) == 570


@pytest.mark.skipif(not TOFU.is_dir(), reason="the TOFU files are not in the shared data folder")
def test_the_real_tofu_files_load():
    s = load_splits(str(TOFU), "forget10")
    assert len(s["full"]) == 4000 and len(s["forget"]) == 400 and len(s["retain"]) == 3600
    assert len(s["forget_eval"]) == 400 and len(s["real_authors_eval"]) == 100 and len(s["world_facts_eval"]) == 117


@pytest.fixture
def folder(tmp_path):
    write_embedded(tmp_path)
    return tmp_path


def lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize("key", ["question", "answer"])
def test_a_line_without_question_or_answer(folder, key):
    records = lines(folder / "forget10.json")
    del records[2][key]
    write(folder / "forget10.json", records)
    with pytest.raises(UserError, match=rf"forget10.json:3: no \"{key}\""):
        load_splits(str(folder), "forget10")


def test_a_line_that_is_not_json(folder):
    text = (folder / "retain90.json").read_text().splitlines()
    text[4] = "{not json"
    (folder / "retain90.json").write_text("\n".join(text) + "\n")
    with pytest.raises(UserError, match=r"retain90.json:5: not valid JSON"):
        load_splits(str(folder), "forget10")


def test_an_empty_forget_set(folder):
    (folder / "forget01.json").write_text("")
    (folder / "forget01_perturbed.json").write_text("")
    with pytest.raises(UserError, match=r"forget01.json: the forget split is empty"):
        load_splits(str(folder), "forget01")


def test_a_forget_split_that_overlaps_the_retain_split(folder):
    retain = lines(folder / "retain95.json")
    retain.append(lines(folder / "forget05.json")[7])
    write(folder / "retain95.json", retain)
    with pytest.raises(UserError, match=r"forget05.json:8: the question .* is also in .*retain95.json"):
        load_splits(str(folder), "forget05")


def test_a_perturbed_file_that_does_not_match_its_split(folder):
    pert = lines(folder / "forget10_perturbed.json")
    pert[3], pert[4] = pert[4], pert[3]
    write(folder / "forget10_perturbed.json", pert)
    with pytest.raises(UserError, match=r"forget10_perturbed.json:4: .* is not line 4 of .*forget10.json"):
        load_splits(str(folder), "forget10")
    write_embedded(folder)
    retain = lines(folder / "retain_perturbed.json")
    retain[1]["question"] = "Who is the author nobody wrote about?"
    write(folder / "retain_perturbed.json", retain)
    with pytest.raises(UserError, match=r"retain_perturbed.json:2: .* is not in .*retain90.json"):
        load_splits(str(folder), "forget10")


def test_a_perturbed_line_without_wrong_answers(folder):
    pert = lines(folder / "world_facts_perturbed.json")
    pert[0]["perturbed_answer"] = []
    write(folder / "world_facts_perturbed.json", pert)
    with pytest.raises(UserError, match=r"world_facts_perturbed.json:1: no \"perturbed_answer\""):
        load_splits(str(folder), "forget10")


def test_batches_resume_mid_epoch_and_shard_over_ranks():
    examples = [([1, 2], [3 + i]) for i in range(10)]
    partner = [([1], [50 + i]) for i in range(7)]
    a = QABatches(examples, 3, 0, 16, partner, seed=4)
    unbroken = [b for _ in range(2) for b in a]
    b = QABatches(examples, 3, 0, 16, partner, seed=4)
    it = iter(b)
    first = [next(it), next(it)]
    state = b.state_dict()
    c = QABatches(examples, 3, 0, 16, partner, seed=4)
    c.load_state_dict(state)
    resumed = first + [x for x in c] + [x for x in c]
    assert len(resumed) == len(unbroken) == 8
    for x, y in zip(resumed, unbroken):
        for part in ("train", "retain"):
            assert x[part]["input_ids"].equal(y[part]["input_ids"])
    ranks = [QABatches(examples, 3, 0, 16, None, seed=4, rank=r, world_size=2) for r in (0, 1)]
    seen = [int(t) for r in ranks for batch in r for t in batch["train"]["input_ids"][:, -1]]
    assert len(seen) == len(set(seen)) == 10
