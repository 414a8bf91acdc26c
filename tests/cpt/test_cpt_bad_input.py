"""CPT's bad input: a data file that is not in its encoding names the file and the line; a context example
whose label word is not one of the label words is refused, naming the example (and the file it came from)."""
import json
import re

import pytest
import yaml

import zoo
from tests.conftest import ROOT, load_recipe, one_line_error
from zoo import hub
from zoo.cpt import CPT
from zoo.cpt.data import read_split
from zoo.cpt.module import check_examples
from zoo.errors import UserError


def test_a_file_not_in_its_encoding_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"0 fine text\n1 more text\n0 caf\xe9 au lait\n")
    with pytest.raises(UserError, match=rf"^--data.path {re.escape(str(path))}: not UTF-8 text \(line 3, byte 29: "
                                        r".*pass the file's encoding with --data.encoding"):
        read_split(path, "utf-8", {"0": " a", "1": " b"})
    assert read_split(path, "latin-1", {"0": " a", "1": " b"})[2] == ("café au lait", "0")


QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def fit(tmp_path, *args):
    return load_recipe("cpt").main(["fit", "--config", str(ROOT / "recipes" / "configs" / "cpt" / "tiny.yaml"), *QUIET,
                                    "--trainer.default_root_dir", str(tmp_path), *args])


@pytest.mark.parametrize("label_words, message", [
    ([" number", " string", " list"], "--model.examples: example 2 ('[1] + [2]') has the label word ' lisst', which is "
                                      "not one of the label words [' number', ' string', ' list']"),
    (None, "--model.examples: example 2 ('[1] + [2]') has the label word ' lisst'"),  # the words come from the data
])
def test_a_context_example_with_an_unknown_label_word_is_refused(tmp_path, capsys, label_words, message):
    examples = json.dumps([["3 + 4", " number"], ["[1] + [2]", " lisst"], ["'a' * 2", " string"]])
    err = one_line_error(capsys, lambda: fit(tmp_path, "--model.examples", examples,
                                             "--model.label_words", json.dumps(label_words)))
    assert message in err, err


def test_a_label_word_without_its_space_gets_a_hint():
    with pytest.raises(UserError, match=r"example 1 \('3 \+ 4'\) has the label word 'number'.*mind the spaces: the "
                                        r"label word is ' number'"):
        check_examples([["3 + 4", "number"]], [" number", " list"])


def test_a_release_whose_examples_have_an_unknown_label_word_names_hparams_yaml(tmp_path):
    model = CPT(examples=[["3 + 4", " number"], ["[1]", " list"]], label_words=[" number", " list"])
    directory = tmp_path / "release"
    hub.save(model, directory)
    spec = yaml.safe_load((directory / hub.HPARAMS).read_text())
    spec["init_args"]["examples"][1][1] = " lisst"
    (directory / hub.HPARAMS).write_text(yaml.safe_dump(spec))
    files = {f.name: hub.sha256(f) for f in sorted(directory.iterdir()) if f.is_file() and not hub.is_document(f.name)}
    (directory / hub.MANIFEST).write_text(json.dumps({"files": files}))  # a folder that verifies, with a bad example
    with pytest.raises(UserError, match=rf"^{re.escape(str(directory / hub.HPARAMS))}: examples: example 2 \('\[1\]'\) "
                                        r"has the label word ' lisst'"):
        zoo.load(directory)
