"""The MomentumSMoE module: layer variants, metrics, releases with their tokenizer, learning, paper.yaml."""
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo import hub
from zoo.momentum_smoe import MomentumSMoE
from zoo.momentum_smoe.module import ExpertLoad, layer_variants_of

SMALL = dict(vocab_size=300, n_positions=16, d_model=16, n_layer=3, n_head=2, num_experts=4, top_k=2, d_hidden=8)


def test_layer_variants():
    assert layer_variants_of("adam", 4, None) == ["adam", "momentum", "momentum", "momentum"]
    assert layer_variants_of("smoe", 2, None) == ["smoe", "smoe"]
    assert layer_variants_of("momentum", 2, ["robust", "smoe"]) == ["robust", "smoe"]
    with pytest.raises(ValueError, match="--model.layer_variants has 1 entries for --model.n_layer 2"):
        layer_variants_of("momentum", 2, ["smoe"])
    with pytest.raises(ValueError, match="unknown"):
        layer_variants_of("momentum", 1, ["nesterov"])


@pytest.mark.parametrize("norm", ["official", "post", "pre"])
@pytest.mark.parametrize("variant", ["smoe", "momentum", "adam", "robust"])
def test_every_variant_has_the_same_parameters_and_a_gradient(variant, norm):
    torch.manual_seed(0)
    model = MomentumSMoE(variant=variant, norm=norm, **SMALL)
    reference = MomentumSMoE(variant="smoe", norm=norm, **SMALL)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    ids = torch.randint(0, 300, (2, 12))
    logits, s = model.net(ids)
    assert logits.shape == (2, 12, 300) and len(s.balance) == len(s.routing) == 3
    (logits.logsumexp(-1).mean() + torch.stack(s.balance).mean()).backward()
    assert model.net.blocks[0].moe.router.weight.grad.abs().sum() > 0  # the balance loss reaches the router


def test_balance_loss_is_summed_over_layers_at_the_official_scale():
    """A router that gives every expert the same probability scores 1/k per layer at the official gate's scale
    whatever the loads, and the trainer adds load_balance times the sum over layers (3 layers, top-2: 3/2)."""
    model = MomentumSMoE(variant="momentum", load_balance=0.01, **SMALL).eval()
    with torch.no_grad():
        for block in model.net.blocks:
            block.moe.router.weight.zero_()
            block.moe.router.bias.zero_()
    with torch.no_grad():
        loss, nll, balance = model.loss(torch.randint(0, 300, (2, 12)))
    assert float(balance) == pytest.approx(3 / 2)
    assert float(loss - nll) == pytest.approx(0.01 * 3 / 2, rel=1e-4)  # fp32: nll ≈ 6 swallows the low digits


def test_eval_forward_is_deterministic_and_routing_is_top_k():
    model = MomentumSMoE(variant="momentum", **SMALL).eval()
    ids = torch.randint(0, 300, (2, 10))
    assert torch.equal(model(ids), model(ids))
    _, s = model.net(ids)
    for r in s.routing:
        assert r.shape == (20, 2) and (r[:, 0] != r[:, 1]).all()


def test_expert_load_metric():
    m = ExpertLoad(n_layer=2, num_experts=4)
    m.update([torch.tensor([[0, 1], [2, 3]]), torch.tensor([[0, 1], [0, 1]])])
    assert m.counts.tolist() == [[1, 1, 1, 1], [2, 2, 0, 0]]
    assert float(m.compute()) == pytest.approx((torch.log(torch.tensor(4.0)) + torch.log(torch.tensor(2.0))).item() / 2)


def test_release_keeps_the_tokenizer(tmp_path):
    from zoo.lm import train_bpe

    model = MomentumSMoE(**SMALL).eval()
    model.tokenizer = train_bpe(["some text to learn from, some text again " * 20], vocab_size=300)
    hub.save(model, tmp_path / "rel")
    back = zoo.load(tmp_path / "rel")
    x = model.example_input_array
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    assert back.tokenizer("some text")["input_ids"] == model.tokenizer("some text")["input_ids"]


@pytest.mark.parametrize("norm", ["official", "post", "pre"])
def test_learning_lowers_validation_perplexity(tmp_path, recipe, norm):
    args = ["fit", "--config", "recipes/configs/momentum_smoe/tiny.yaml", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.max_steps", "150", "--trainer.val_check_interval", "150", "--trainer.limit_val_batches", "8",
            "--model.lr", "0.01", "--model.warmup_steps", "10", "--data.batch_size", "8", "--model.norm", norm,
            "--checkpoint.every_n_train_steps", "1000"]
    cli = recipe("momentum_smoe").main(args)
    model, dm = cli.model.eval(), cli.datamodule
    fresh = MomentumSMoE(**{k: v for k, v in model.hparams.items() if k != "init_from" and not k.startswith("_")}).eval()
    from torchmetrics.text import Perplexity

    def ppl(m, loader):
        metric = Perplexity()
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if i < 8:
                    metric.update(m(batch)[:, :-1], batch[:, 1:])
        return float(metric.compute())

    val, attacked = dm.val_dataloader()
    before, after = ppl(fresh, val), ppl(model, val)
    assert after < 0.25 * before, (before, after)
    if norm == "pre":
        # the word-swap attack hurts once the model uses context; the tiny post-norm model is not there yet
        # after 150 steps (at ~950 it is near a unigram model, and swapping long, hard words for AAA then
        # lowers the per-token perplexity): measured 975 clean, 969 attacked
        assert ppl(model, attacked) > after
    assert float(cli.trainer.callback_metrics["val/load_entropy"]) > 0.5  # the experts are all in use


@pytest.mark.parametrize("release", ["smoe-pydoc", "momentum-smoe-pydoc"])
def test_releases_load_and_fine_tune_from(release):
    released = zoo.load(release)
    assert released.tokenizer is not None
    hp = {k: v for k, v in released.hparams.items() if k != "init_from"}
    tuned = MomentumSMoE(**hp, init_from=release)
    assert len(tuned.tokenizer) == len(released.tokenizer)
    tuned.setup("fit")
    x = released.example_input_array
    with torch.no_grad():
        assert torch.equal(tuned.eval()(x), released(x))


def test_paper_config_is_the_official_medium_run():
    """scripts/smoe-mom-m.sh: --niter 80 × --nbatches 1000 steps, --batch-sz 48 over 4 GPUs with --batch-split 2
    (gradient accumulation), --block-sz 512, the official blocks, and no balance loss (its gates never compute one)."""
    cfg = yaml.safe_load((Path(__file__).parents[2] / "recipes/configs/momentum_smoe/paper.yaml").read_text())
    trainer, model, data = cfg["trainer"], cfg["model"], cfg["data"]
    assert trainer["max_steps"] == 80 * 1000
    assert trainer["devices"] * trainer["accumulate_grad_batches"] * data["batch_size"] == 48
    assert data["batch_size"] == 48 // 4 // 2 and data["block_size"] == 512
    assert model["norm"] == "official" and model["load_balance"] == 0.0
    assert (model["n_layer"], model["d_model"], model["d_hidden"], model["num_experts"], model["top_k"]) == (6, 352, 352, 16, 2)
    assert (model["lr"], model["warmup_steps"], model["mu"], model["gamma"]) == (7e-4, 4000, 0.7, 1.0)
