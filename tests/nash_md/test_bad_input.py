"""Bytes that are not UTF-8 in a prompt file: an error naming the file and the line, not a traceback."""
import re

import pytest

from zoo.errors import UserError
from zoo.nash_md.data import read_prompts


@pytest.mark.parametrize("name, good, bad", [
    ("prompts.jsonl", b'{"prompt": "a prompt"}\n', b'{"prompt": "caf\xe9"}\n'),
    ("prompts.txt", b"a prompt\n", b"caf\xe9 au lait\n"),
])
def test_a_non_utf8_line_names_the_file_and_the_line(tmp_path, name, good, bad):
    path = tmp_path / name
    path.write_bytes(good * 4 + bad + good)
    with pytest.raises(UserError, match=rf"^--data.path {re.escape(str(path))}: not UTF-8 text \(line 5, byte \d+"):
        read_prompts(str(path))


def test_crlf_lines_read_as_lines(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"one\r\ntwo\r\nthree\r\n")
    train, held = read_prompts(str(path))
    assert train + held == ["one", "two", "three"]
