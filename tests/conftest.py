import os
import sys
from pathlib import Path

import pytest
import torch

from zoo.cli import load_recipe  # noqa: F401  (the tests import it from here)

ROOT = Path(__file__).resolve().parents[1]

def _shared_data() -> Path:
    """Real public data sets for tests: $ZOO_SHARED_DATA, else shared/data beside the checkout or its parent."""
    candidates = [os.environ.get("ZOO_SHARED_DATA"), ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"]
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), ROOT.parent / "shared" / "data")


SHARED_DATA = _shared_data()

# Tiny models on a shared CPU: one intra-op thread avoids OpenMP spin contention.
torch.set_num_threads(1)


def one_line_error(capsys, run) -> str:
    """The first line of the error ``run()`` (a recipe's main) stops with: exit status 2, at most two lines (the
    message, and where --help is), starting "error: "."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run()
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) <= 2 and err.startswith("error: "), err
    return err.splitlines()[0]


@pytest.fixture
def recipe():
    return load_recipe


def pytest_configure(config):
    sys.path.insert(0, str(ROOT))
