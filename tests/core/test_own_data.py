"""The README's "Your own data" table, row by row: each row's command runs through its recipe on a small
folder (or environment) of the row's shape, written here the way a user would write it, and what trained is
the user's data, not a default. A README row without a test here fails the first test."""
import re
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch

from ..conftest import ROOT, load_recipe

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]

# Each README row's methods, and the test that runs that row (here, or beside the method's own tests).
ROWS = {
    "op_gfn": "test_op_gfn_trains_on_an_environment_file_of_ones_own",
    "lm": "test_lm_trains_on_a_folder_of_splits",
    "momentum_smoe": "test_momentum_smoe_trains_on_one_text_file",
    "paretognn": "test_paretognn_trains_on_an_edge_list_with_features_and_labels",
    "mdpo": "test_mdpo_trains_on_an_environment_callable_of_ones_own",
    "deep_ga": "test_deep_ga_trains_on_an_environment_callable_of_ones_own",
    "go_explore": "tests/go_explore/test_go_explore.py::test_a_user_environment_with_the_protocol_trains",
    "npo": "tests/npo/test_own_data.py::test_the_readme_row_trains_and_evaluates_a_forget_and_a_retain_file",
    "preference": "test_preference_then_nash_md_on_pairs_of_ones_own",
    "nash_md": "test_preference_then_nash_md_on_pairs_of_ones_own",
    "cpt": "tests/cpt/test_own_data.py::test_the_readme_row_trains_on_a_folder_and_writes_its_context",
}


def fit(method, root, *args):
    return load_recipe(method).main(["fit", "--config", f"recipes/configs/{method}/tiny.yaml", *QUIET,
                                     "--trainer.default_root_dir", str(root), *args])


def test_every_readme_row_is_run_by_a_test():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Your own data", 1)[1].split("\n\n")[1]
    methods = {m.strip() for row in table.splitlines()[2:] for m in row.split("|")[1].split(",")}
    assert methods == set(ROWS), methods ^ set(ROWS)
    here = set(globals())
    for test in ROWS.values():
        if "::" in test:
            path, name = test.split("::")
            assert f"def {name}(" in (ROOT / path).read_text(), test
        else:
            assert test in here, test


# --- op_gfn: an environment class in a file of one's own ---------------------------------------------------

def test_op_gfn_trains_on_an_environment_file_of_ones_own(tmp_path):
    """A copy of the worked example, renamed, outside the repository: `--model.env my_env.py:MyEnv`."""
    source = (ROOT / "data" / "op_gfn" / "bitstrings.py").read_text().replace("class BitStrings", "class MyEnv")
    (tmp_path / "my_env.py").write_text(source)
    cli = fit("op_gfn", tmp_path / "logs", "--model.env", f"{tmp_path}/my_env.py:MyEnv",
              "--model.env_kwargs", '{"n": 5, "motif": "11"}')
    assert cli.trainer.global_step == 4
    env = cli.model.env
    assert type(env).__name__ == "MyEnv" and env.n == 5
    assert cli.model.sample(3).shape == (3, 6)  # [length, 5 bits]


# --- lm, momentum_smoe: plain text ----------------------------------------------------------------------

def corpus(n_lines: int, word: str) -> list[str]:
    rng = np.random.default_rng(0)
    words = [word, "river", "stone", "light", "quiet", "north", "bread", "window"]
    return [" ".join(rng.choice(words, 12)) + "." for _ in range(n_lines)]


def test_lm_trains_on_a_folder_of_splits(tmp_path):
    folder = tmp_path / "my_corpus"
    folder.mkdir()
    for split, n in (("train", 300), ("validation", 40), ("test", 40)):
        (folder / f"{split}.txt").write_text("\n".join(corpus(n, f"zebra{split}")) + "\n")
    cli = fit("lm", tmp_path / "logs", "--data.path", str(folder))
    assert cli.trainer.global_step == 4
    # the tokenizer was learned from the folder's train file: its own words are single tokens
    tok = cli.model.tokenizer
    assert len(tok.encode(" zebratrain")) == 1 and len(tok.encode(" zebratest")) > 1
    assert 1 < float(cli.trainer.callback_metrics["val/ppl"]) < 4096  # evaluated on the validation file


def test_momentum_smoe_trains_on_one_text_file(tmp_path):
    path = tmp_path / "my_text.txt"
    path.write_text("\n".join(corpus(400, "zebra")) + "\n")
    cli = fit("momentum_smoe", tmp_path / "logs", "--data.path", str(path))
    assert cli.trainer.global_step == 4
    assert len(cli.model.tokenizer.encode(" zebra")) == 1
    data = cli.datamodule
    assert {"train", "val", "test"} <= set(data.splits) and all(len(v) > 0 for v in data.splits.values())  # one file, three splits


# --- paretognn: an edge list, features and labels ---------------------------------------------------------

def test_paretognn_trains_on_an_edge_list_with_features_and_labels(tmp_path):
    """Two communities of 60 nodes, denser inside, features that lean toward the community."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    p = np.where(y[:, None] == y[None, :], 0.15, 0.01)
    src, dst = np.nonzero(np.triu(rng.random((120, 120)) < p, 1))
    (tmp_path / "edges.csv").write_text("source,target\n" + "".join(f"{a},{b}\n" for a, b in zip(src, dst)))
    x = rng.normal(size=(120, 8)) + y[:, None]
    (tmp_path / "feats.csv").write_text("".join(",".join(f"{v:.4f}" for v in row) + "\n" for row in x))
    (tmp_path / "labels.csv").write_text("".join(f"{c}\n" for c in y))
    cli = fit("paretognn", tmp_path / "logs", "--data.path", str(tmp_path / "edges.csv"),
              "--data.features", str(tmp_path / "feats.csv"), "--data.labels", str(tmp_path / "labels.csv"))
    assert cli.trainer.global_step == 4
    graph = cli.datamodule.graph
    assert graph.num_nodes == 120 and graph.x.shape == (120, 8) and torch.equal(graph.y, torch.as_tensor(y))
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    m = cli.trainer.callback_metrics
    assert float(m["eval/node_acc"]) > 0.75 and "eval/nmi" in m  # the probe read the user's labels


# --- mdpo, deep_ga: a gymnasium environment of one's own, by `package.module:callable` ------------------------

class Walk(gym.Env):
    """Walk a point on a line toward +5 (actions 0: left, 1: right); reward is the step toward it."""

    observation_space = gym.spaces.Box(-10.0, 10.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = 0.0, 0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += 1.0 if int(action) == 1 else -1.0
        self.t += 1
        return np.array([self.x], np.float32), float(int(action) == 1), self.x >= 5, self.t >= 20, {}


@pytest.fixture
def my_pkg(tmp_path, monkeypatch):
    """A package `my_pkg` on the path whose `envs.make_env()` returns a Walk, counting its calls."""
    pkg = tmp_path / "my_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "envs.py").write_text(textwrap.dedent("""
        from tests.core.test_own_data import Walk
        made = []
        def make_env(**kwargs):
            made.append(kwargs)
            return Walk()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    import sys
    for name in ("my_pkg", "my_pkg.envs"):
        sys.modules.pop(name, None)


def test_mdpo_trains_on_an_environment_callable_of_ones_own(my_pkg, tmp_path):
    cli = fit("mdpo", tmp_path / "logs", "--model.env", "my_pkg.envs:make_env")
    assert cli.trainer.global_step == 4
    import my_pkg.envs
    assert my_pkg.envs.made  # the user's callable built the environments
    action = cli.model.act(np.zeros(1, np.float32))
    assert int(action) in (0, 1)


def test_deep_ga_trains_on_an_environment_callable_of_ones_own(my_pkg, tmp_path):
    cli = fit("deep_ga", tmp_path / "logs", "--model.env", "my_pkg.envs:make_env", "--model.policy", "mlp",
              "--model.env_kwargs", "{}")
    assert cli.trainer.global_step == 4
    import my_pkg.envs
    assert my_pkg.envs.made
    assert 0 <= cli.model.best_return <= 20  # a return of the user's walk: one per step right


# --- preference, nash_md: pairs of one's own, then Nash-MD against the model trained on them ----------------------

def test_preference_then_nash_md_on_pairs_of_ones_own(tmp_path):
    """Pairs labelled by a rule (the chosen response is the polite one); the preference model they train is
    the judge Nash-MD then plays against, on the same file's prompts."""
    prompts = [f"Tell me about the {w}." for w in ("river", "stone", "light", "north", "bread", "window",
                                                     "garden", "bridge", "winter", "market", "harbour", "forest")]
    rows = [{"prompt": p, "chosen": " Please, gladly: it is old.", "rejected": " No. Go away."} for p in prompts]
    pairs = tmp_path / "pairs.jsonl"
    import json
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pref = fit("preference", tmp_path / "pref", "--data.path", str(pairs), "--data.val_fraction", "0.25")
    assert pref.trainer.global_step == 4
    assert {r["prompt"] for r in pref.datamodule.train_rows} <= set(prompts)
    ckpt = tmp_path / "pref" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()

    cli = fit("nash_md", tmp_path / "nash", "--model.preference_model", str(ckpt), "--data.path", str(pairs))
    assert cli.trainer.global_step == 4
    judge = cli.model.load_judge()
    trained = pref.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in judge.state_dict().items())  # the judge is the trained model
    assert set(cli.datamodule.train_prompts) <= set(prompts)
