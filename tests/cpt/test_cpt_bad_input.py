"""CPT's bad input: a data file that is not in its encoding names the file and the line."""
import re

import pytest

from zoo.cpt.data import read_split
from zoo.errors import UserError


def test_a_file_not_in_its_encoding_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_bytes(b"0 fine text\n1 more text\n0 caf\xe9 au lait\n")
    with pytest.raises(UserError, match=rf"^--data.path {re.escape(str(path))}: not UTF-8 text \(line 3, byte 29: "
                                        r".*pass the file's encoding with --data.encoding"):
        read_split(path, "utf-8", {"0": " a", "1": " b"})
    assert read_split(path, "latin-1", {"0": " a", "1": " b"})[2] == ("café au lait", "0")
