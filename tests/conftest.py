import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Tiny models on a shared CPU: one intra-op thread avoids OpenMP spin contention.
torch.set_num_threads(1)


def load_recipe(method: str):
    """The recipes/<method>.py module, whose main(args) runs ZooCLI."""
    path = ROOT / "recipes" / f"{method}.py"
    spec = importlib.util.spec_from_file_location(f"recipe_{method}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def recipe():
    return load_recipe


def pytest_configure(config):
    sys.path.insert(0, str(ROOT))
