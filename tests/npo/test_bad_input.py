"""Bytes that are not UTF-8 in a TOFU file: an error naming the file and the line, not a traceback."""
import re

import pytest

from zoo.errors import UserError
from zoo.npo.data import load_splits, write_embedded


def test_a_non_utf8_line_names_the_file_and_the_line(tmp_path):
    write_embedded(tmp_path)
    path = tmp_path / "retain90.json"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"\"answer\": \"", b"\"answer\": \"caf\xe9 ", 1)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(UserError, match=rf"^--data.path {re.escape(str(path))}: not UTF-8 text \(line 4, byte \d+"):
        load_splits(str(tmp_path), "forget10")
