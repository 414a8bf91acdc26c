"""Bytes that are not UTF-8 in a preference file: one line naming the file and the line, not a traceback."""
import json

from ..conftest import ROOT, load_recipe

GOOD = {"prompt": "Q", "chosen": "a good answer", "rejected": "a bad one"}


def test_a_non_utf8_line_is_one_line_naming_the_file_and_the_line(tmp_path, capsys):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes((json.dumps(GOOD) + "\n").encode() * 3 + b'{"prompt": "caf\xe9", "chosen": "x", "rejected": "y"}\n')
    capsys.readouterr()
    try:
        load_recipe("preference").main(["fit", "--config", str(ROOT / "recipes" / "configs" / "preference" / "tiny.yaml"),
                                        "--data.path", str(path), "--trainer.default_root_dir", str(tmp_path),
                                        "--trainer.enable_progress_bar", "false"])
    except SystemExit as e:
        assert e.code == 2
    else:
        raise AssertionError("the recipe accepted a file that is not UTF-8")
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --data.path {path}: not UTF-8 text (line 4, byte ") and len(err.splitlines()) <= 2, err
