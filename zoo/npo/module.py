"""Unlearning with Negative Preference Optimization (Zhang et al., COLM 2024) on TOFU's pipeline.

    NPO   L = −(2/β) · mean_i log σ(−β·(log π_θ(y_i|x_i) − log π_ref(y_i|x_i)))    (zoo/npo/objective.py)

One module runs every stage of TOFU, chosen by config:

- ``objective: finetune`` with ``--data.train_split full``: fine-tune the base model on every author
  (the model that unlearning starts from); with ``--data.train_split retain``: the retain model,
  trained on the retain split only, whose truth ratios on the forget set are the reference of
  forget quality;
- ``objective: ga | gd | ga_kl | npo | npo_rt | npo_kl`` with ``--data.train_split forget``: unlearn
  the forget split. The reference π_ref is the model as it was before unlearning: a frozen copy, or
  with LoRA (``--model.lora_r``) the same network with its adapters switched off, so that no second
  copy of the weights is held.

Validation computes TOFU's metrics (zoo/npo/metrics.py): forget quality (against ``--model.retain_model``),
model utility, and the forget set's probability, ROUGE-L and truth ratio. Releases are Hugging Face folders.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from zoo import offline
from zoo.errors import UserError
from zoo.lm.helpers import add_lora, context_length, load_causal_lm, prompt_response_batch, resolve_base, sample
from zoo.lm.objective import sequence_log_probs
from zoo.module import ZooModule
from zoo.npo import metrics
from zoo.npo.objective import OBJECTIVES, nll, npo_weight, retain_kl, unlearning_loss

NEEDS_REFERENCE = ("npo", "npo_rt", "npo_kl", "ga_kl")


class _Frozen:
    """Holds the reference model outside the module tree: not in the state dict, the optimiser or DDP."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model


class NPO(ZooModule):
    model_hparams = ("base", "retain_model")  # names of models to load: offline only where read from a file
    curve_metrics = ("val/forget_quality", "val/retain_utility", "val/forget_prob", "train/loss")

    def __init__(
        self,
        base: str = "tiny-lm",
        objective: str = "npo",
        beta: float = 0.1,
        retain_weight: float = 1.0,
        lr: float = 1e-5,
        weight_decay: float = 0.01,
        warmup_steps: int | None = None,
        schedule_steps: int | None = None,
        lora_r: int = 0,
        lora_alpha: float = 32.0,
        lora_dropout: float = 0.05,
        retain_model: str | None = None,
        eval_size: int = 300,
        eval_batch_size: int = 32,
        max_new_tokens: int = 200,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            base: the causal LM to train: a zoo id (``tiny-lm``, ``tiny-lm-tofu``), a save_pretrained
                directory or an HF hub name; its tokenizer comes with it.
            objective: ``finetune`` (next-token loss on the answers: the fine-tuning and retain stages),
                or an unlearning objective: ``ga``, ``gd`` (GA + retain NLL), ``ga_kl``, ``npo``,
                ``npo_rt`` (NPO + retain NLL), ``npo_kl``.
            beta: NPO's inverse temperature β.
            retain_weight: λ, the weight of the retain term (NLL or KL) of gd, ga_kl, npo_rt, npo_kl.
            lr: AdamW peak learning rate (linear warm-up, then linear decay to 0 at schedule_steps).
            weight_decay: AdamW weight decay (not on biases and norms).
            warmup_steps: learning-rate warm-up steps; one epoch of the training split when not given.
            schedule_steps: steps of the schedule; the trainer's max_steps when not given.
            lora_r: rank of LoRA adapters (PEFT) on every linear layer; 0 trains every weight.
            lora_alpha: LoRA scale α.
            lora_dropout: dropout on the LoRA branch.
            retain_model: the retain model, for forget quality: a zoo id, a save_pretrained directory, a
                ``.ckpt`` of a retain run, or the ``truth_ratios.json`` such a run writes. None: no forget quality.
            eval_size: items of each evaluation set (TOFU's ds_size: its first 300).
            eval_batch_size: sequences per evaluation forward pass.
            max_new_tokens: the longest greedy answer generated for ROUGE-L (cut at the model's context).
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__()
        self.save_hyperparameters()
        if objective not in OBJECTIVES:
            raise UserError(f"--model.objective {objective!r}: one of {', '.join(OBJECTIVES)}")
        if beta <= 0:
            raise UserError(f"--model.beta must be positive, got {beta}")
        self.model, self.tokenizer = load_causal_lm(base)
        if self.tokenizer is None:
            raise UserError(f"--model.base {base}: no tokenizer comes with it; give a model saved with its tokenizer")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if lora_r > 0:
            self.model = add_lora(self.model, lora_r, lora_alpha, lora_dropout, target_modules="all-linear")
        self.model.train()  # from_pretrained returns eval mode; Lightning expects a module in training mode
        self._reference: _Frozen | None = None
        self._retain_ratios: Tensor | None = None
        self.last_eval: dict[str, Any] = {}
        vocab = self.model.config.vocab_size
        self.example_input_array = torch.arange(16).remainder(vocab).view(2, 8)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Next-token logits [B, T, V] of token ids [B, T]."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    # -- starting points -------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        init_from = self.hparams.get("init_from")
        if init_from and self._initialised_from != init_from and not str(init_from).endswith(".ckpt"):
            path = Path(resolve_base(init_from, "--model.init_from"))
            if (path / "config.json").exists():  # a release in HF format
                from transformers import AutoModelForCausalLM

                source = AutoModelForCausalLM.from_pretrained(path)
                target = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
                target.load_state_dict(source.state_dict(), strict=True)
                self._initialised_from = init_from
        super().setup(stage)
        if stage == "fit":
            self.check_data()
            if self.hparams.objective in NEEDS_REFERENCE and not self.hparams.lora_r and self._reference is None:
                # the model before unlearning (after init_from; a resumed run restores its weights after this)
                ref = copy.deepcopy(self.model).eval()
                ref.requires_grad_(False)
                self._reference = _Frozen(ref)

    def check_data(self) -> None:
        dm = getattr(self._trainer, "datamodule", None)
        split = getattr(getattr(dm, "hparams", {}), "get", lambda *_: None)("train_split")
        if split is None:
            return
        unlearning = self.hparams.objective != "finetune"
        if unlearning and split != "forget":
            raise UserError(f"--model.objective {self.hparams.objective} unlearns the forget split: set "
                            f"--data.train_split forget (it is {split})")
        if not unlearning and split == "forget":
            rank_zero_warn("--model.objective finetune with --data.train_split forget trains on the forget split only")

    # -- training ----------------------------------------------------------------------------------

    def reference_logits(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits of π_ref, without gradient: the frozen copy, or this network with its adapters off."""
        with torch.no_grad():
            if self._reference is None:  # LoRA: the base weights are the model before unlearning
                with self.model.disable_adapter():
                    return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            ref = self._reference.model
            if next(ref.parameters()).device != self.device:
                ref.to(self.device)
            return ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

    def answer_log_likelihood(self, logits: Tensor, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(log π(y|x) summed over each answer's tokens [B], the answers' token counts [B])."""
        return (sequence_log_probs(logits, batch["input_ids"], batch["target_mask"]),
                batch["target_mask"][:, 1:].sum(-1))

    def training_step(self, batch: dict[str, dict[str, Tensor]], batch_idx: int) -> Tensor:
        hp, train = self.hparams, batch["train"]
        logits = self(train["input_ids"], train["attention_mask"])
        logp, n = self.answer_log_likelihood(logits, train)
        log = {}
        if hp.objective == "finetune":
            loss = nll(logp, n)
        else:
            ref_logp = retain_nll = kl = None
            if hp.objective.startswith("npo"):
                ref_logp, _ = self.answer_log_likelihood(self.reference_logits(train), train)
                log["train/npo_weight"] = npo_weight(logp.detach(), ref_logp, hp.beta).mean()
            if hp.objective in ("gd", "npo_rt", "ga_kl", "npo_kl"):
                retain = batch["retain"]
                retain_logits = self(retain["input_ids"], retain["attention_mask"])
                if hp.objective in ("gd", "npo_rt"):
                    retain_nll = nll(*self.answer_log_likelihood(retain_logits, retain))
                    log["train/retain_nll"] = retain_nll.detach()
                else:
                    kl = retain_kl(retain_logits, self.reference_logits(retain), retain["attention_mask"])
                    log["train/retain_kl"] = kl.detach()
            loss = unlearning_loss(hp.objective, logp, n, ref_logp, retain_nll, kl, hp.beta, hp.retain_weight)
            log["train/forget_nll"] = nll(logp.detach(), n)
        if self.logging_step():
            bs = train["input_ids"].shape[0]
            self.log("train/loss", loss, prog_bar=True, batch_size=bs)
            for k, v in log.items():
                self.log(k, v, batch_size=bs)
        return loss

    def configure_optimizers(self):
        """AdamW, weight decay off biases and norms, linear warm-up then linear decay (the HF Trainer's)."""
        from transformers import get_linear_schedule_with_warmup

        hp = self.hparams
        params = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        no_decay = ("bias", "ln_", "norm", "layernorm")
        decay = [p for n, p in params if not any(k in n.lower() for k in no_decay)]
        rest = [p for n, p in params if any(k in n.lower() for k in no_decay)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": hp.weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=hp.lr)
        K = self.schedule_steps()
        warmup = hp.warmup_steps
        if warmup is None:  # one epoch of the training split, as the official code warms up
            dm = getattr(self.trainer, "datamodule", None)
            warmup = len(dm.train_dataloader()) if dm is not None else 0
        sched = get_linear_schedule_with_warmup(opt, min(warmup, K), K)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- TOFU's evaluation ---------------------------------------------------------------------------

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        dm = self.trainer.datamodule
        self.last_eval = self.evaluate(dm)
        for k, v in self.last_eval["metrics"].items():
            self.log(f"val/{k}", v, prog_bar=k in ("forget_quality", "retain_utility"), sync_dist=True, batch_size=1)

    @torch.no_grad()
    def evaluate(self, dm, model: torch.nn.Module | None = None, generate: bool = True,
                 sets: tuple[str, ...] | None = None) -> dict[str, Any]:
        """TOFU's per-item statistics of ``model`` (this one by default) on the evaluation sets, and the metrics."""
        model = self.model if model is None else model
        was_training = model.training
        model.eval()
        stats = {}
        for name, items in dm.eval_sets(self.hparams.eval_size).items():
            if sets is not None and name not in sets:
                continue
            stats[name] = self.sharded_stats(model, dm, items, generate)
        model.train(was_training)
        if sets is None:
            retain = self.retain_truth_ratios(dm)
            out = metrics.summarise(stats, retain)
        else:
            out = {}
        ratios = metrics.truth_ratio(stats["forget"]["para"], stats["forget"]["pert"]) if "pert" in stats.get("forget", {}) else None
        return {"metrics": out, "forget_truth_ratio": ratios}

    def sharded_stats(self, model, dm, items: list[dict[str, Any]], generate: bool) -> dict[str, Tensor]:
        """``item_stats`` of every item, each rank computing every world_size-th one; gathered in order."""
        width = max(len(r.get("perturbed_answer", ())) for r in items)
        trainer = self._trainer
        world = trainer.world_size if trainer is not None else 1
        if world == 1:
            return self.item_stats(model, dm, items, generate, width)
        m = -(-len(items) // world)
        mine = items[trainer.global_rank::world]
        mine = mine + [items[0]] * (m - len(mine))  # equal shares; the fillers fall past the end below
        stats = self.item_stats(model, dm, mine, generate, width)
        out = {}
        for key, t in stats.items():
            gathered = self.all_gather(t.to(self.device)).cpu()  # [world, m, ...]: item k·world + r at [r, k]
            out[key] = gathered.transpose(0, 1).reshape(world * m, *t.shape[1:])[:len(items)]
        return out

    def item_stats(self, model, dm, items: list[dict[str, Any]], generate: bool, width: int) -> dict[str, Tensor]:
        """Per-token mean log-probs of each item's answer, paraphrase and ``width`` perturbed answers (an
        item with fewer counts the mean of its own), and the ROUGE-L recall of its greedy answer. Items
        without perturbed answers (``width`` 0) give the answer's alone."""
        if width == 0:
            avg = self.mean_log_probs(model, [dm.encode(r["question"], r["answer"]) for r in items], dm.hparams.max_length)
            out = {"gt": avg}
            if generate:
                texts = self.greedy_answers(model, dm, [r["question"] for r in items])
                out["rouge"] = metrics.rouge_l_recall(texts, [r["answer"] for r in items])
            return out
        rows, owner = [], []
        for i, r in enumerate(items):
            answers = [r["answer"], r.get("paraphrased_answer", r["answer"]), *r["perturbed_answer"]]
            for a in answers:
                rows.append(dm.encode(r["question"], a))
            owner.append(len(answers))
        avg = self.mean_log_probs(model, rows, dm.hparams.max_length)
        gt, para, pert, at = [], [], [], 0
        for k in owner:
            gt.append(avg[at])
            para.append(avg[at + 1])
            p = avg[at + 2:at + k]
            pert.append(torch.cat([p, p.new_full((width - len(p),), float("nan"))]) if len(p) < width else p)
            at += k
        pert_t = torch.stack(pert)
        if torch.isnan(pert_t).any():  # uneven numbers of perturbed answers: average those present
            pert_t = torch.where(torch.isnan(pert_t), pert_t.nanmean(-1, keepdim=True), pert_t)
        out = {"gt": torch.stack(gt), "para": torch.stack(para), "pert": pert_t}
        if generate:
            texts = self.greedy_answers(model, dm, [r["question"] for r in items])
            out["rouge"] = metrics.rouge_l_recall(texts, [r["answer"] for r in items])
        return out

    def mean_log_probs(self, model, rows: list[tuple[list[int], list[int]]], max_length: int) -> Tensor:
        """Per-token mean log-probability of each response given its prompt: [N]."""
        pad = self.tokenizer.pad_token_id
        out = []
        bs = self.hparams.eval_batch_size
        for i in range(0, len(rows), bs):
            b = {k: v.to(self.device) for k, v in prompt_response_batch(rows[i:i + bs], pad, max_length).items()}
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            out.append(sequence_log_probs(logits, b["input_ids"], b["target_mask"], average=True).float().cpu())
        return torch.cat(out)

    def greedy_answers(self, model, dm, questions: list[str]) -> list[str]:
        """Greedy answers (KV cache, zoo.lm.sample), decoded up to the first EOS."""
        tok, bs = self.tokenizer, self.hparams.eval_batch_size
        limit = context_length(model) or 1 << 30
        answers = []
        for i in range(0, len(questions), bs):
            prompts = [tok(dm.prompt(q))["input_ids"] for q in questions[i:i + bs]]
            width = max(len(p) for p in prompts)
            ids = torch.full((len(prompts), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, p in enumerate(prompts):
                ids[j, width - len(p):], mask[j, width - len(p):] = torch.tensor(p), 1
            new = max(1, min(self.hparams.max_new_tokens, limit - width))
            out, _ = sample(model, ids.to(self.device), mask.to(self.device), max_new_tokens=new, temperature=0,
                            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            for row in out[:, width:].tolist():
                if tok.eos_token_id in row:
                    row = row[:row.index(tok.eos_token_id)]
                answers.append(tok.decode(row, skip_special_tokens=True).strip())
        return answers

    def retain_truth_ratios(self, dm) -> Tensor | None:
        """The retain model's truth ratios on the forget set (computed once; None without a retain model)."""
        source = self.hparams.retain_model
        if source is None or "forget_eval" not in dm.splits:  # no perturbed answers: no truth ratios to compare
            return None
        if self._retain_ratios is None:
            if str(source).endswith(".json"):
                self._retain_ratios = torch.tensor(read_truth_ratios(Path(source), dm.hparams.forget_split))
            else:
                with offline.marking(self._names_from_files):  # a retain model named by a file stays offline
                    model = load_retain_model(source).to(self.device)
                stats = self.evaluate(dm, model, generate=False, sets=("forget",))
                self._retain_ratios = stats["forget_truth_ratio"]
        return self._retain_ratios

    def on_fit_end(self) -> None:
        """Write the last evaluation's forget-set truth ratios beside the logs (a retain run's file is what
        ``--model.retain_model`` takes)."""
        ratios = self.last_eval.get("forget_truth_ratio")
        if ratios is None or not self.trainer.is_global_zero or not self.trainer.loggers:
            return
        path = Path(self.trainer.loggers[0].log_dir) / "truth_ratios.json"
        split = self.trainer.datamodule.hparams.forget_split
        path.write_text(json.dumps({"forget_split": split, "truth_ratio": ratios.tolist(),
                                    "metrics": self.last_eval["metrics"]}, indent=1) + "\n")

    # -- releases in HF format -----------------------------------------------------------------------

    def hf_model(self):
        """The plain HF model (LoRA adapters merged into a copy)."""
        if hasattr(self.model, "merge_and_unload"):
            return copy.deepcopy(self.model).merge_and_unload()
        return self.model

    def save_release(self, directory: Path) -> None:
        """With LoRA (``lora_r`` > 0), the adapter over the base it was trained on, in PEFT's format, stacked
        over the base's own adapter where the base is itself an adapter release (zoo/lm/adapter.py): a few
        MB that plain PEFT loads over the same base. Else a Hugging Face folder: config.json,
        model.safetensors. The tokenizer's files either way."""
        from zoo.lm import adapter

        if self.hparams.lora_r:
            own, transposed = adapter.factors_of(self.model)
            chain, base = [own], self.hparams.base
            where = resolve_base(base)
            while adapter.is_adapter(where):  # trained over adapters merged into their base: one adapter over it
                chain.insert(0, adapter.read(where)[0])
                base = adapter.base_of(where)["base"]
                where = resolve_base(base)
            adapter.write(adapter.stack(*chain), directory, base, transposed, adapter.fingerprint(where))
        else:
            self.hf_model().save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)

    @classmethod
    def load_release(cls, directory: Path, init_args: dict[str, Any]) -> "NPO":
        """The release's model (an adapter release: its base with the adapter merged), adapters off."""
        init_args = {**init_args, "base": str(directory), "lora_r": 0}  # adapters are merged on loading
        init_args.pop("init_from", None)
        return cls(**init_args)

    def release_metrics(self) -> dict[str, float]:
        """TOFU's metrics of the final model (the last evaluation, made again if training went on since)."""
        trainer = self._trainer
        if trainer is None or trainer.datamodule is None:
            return {}
        if not self.last_eval or trainer.global_step != getattr(self, "_last_eval_step", -1):
            self.last_eval = self.evaluate(trainer.datamodule)
        return {f"val/{k}": float(v) for k, v in self.last_eval["metrics"].items()}

    def on_validation_epoch_end(self) -> None:
        self._last_eval_step = self.trainer.global_step


def read_truth_ratios(path: Path, forget_split: str) -> list[float]:
    try:
        data = json.loads(path.read_text())
        ratios = [float(x) for x in data["truth_ratio"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"--model.retain_model {path}: not a truth_ratios.json of a retain run ({e})") from None
    if data.get("forget_split") not in (None, forget_split):
        raise UserError(f"--model.retain_model {path}: truth ratios of {data['forget_split']}, but this run "
                        f"evaluates {forget_split}")
    return ratios


def load_retain_model(source: str) -> torch.nn.Module:
    """The retain model's HF network from a zoo id, a folder, an HF name, or a ``.ckpt`` of an npo run."""
    if str(source).endswith(".ckpt"):
        from zoo.module import load

        module = load(source)
        model = module.model
        return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    model, _ = load_causal_lm(source, "--model.retain_model")
    return model
