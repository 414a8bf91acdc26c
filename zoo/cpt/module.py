"""Context-aware Prompt Tuning (Blau et al., 2024) and the few-shot baselines it is compared with.

    method = cpt            the k examples written as a context (input/output templates); the context's
                            embedding E_C + δ is trained on the loss of its own labels and the query's
                            (decay γ for earlier examples), δ projected on ‖δ_j‖ ≤ ε_type · √(d/2048),
                            label tokens never moved (PEFT's CPTConfig; zoo/cpt/objective.py)
    method = icl            the same context, no training (in-context learning)
    method = prompt_tuning  n trained virtual tokens before the query (PEFT's prompt tuning)
    method = lora           LoRA adapters (PEFT) trained on the k examples
    method = full           every weight trained on the k examples

Every method classifies a query by the label words' likelihood after it, argmax_c log p(w_c | C, x),
and every one reads its k examples from ``examples`` (the data module draws them where not given),
so a checkpoint or release holds the context it was trained with. Fine-tuning a release (``init_from``)
draws a new context from the run's data and keeps what carries over (``CPT._start_from``).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from zoo.cpt.context import Templates, build_context, encode_example, overhead, pad_right, text_budget
from zoo.cpt.objective import balance_weights, cpt_loss, label_scores, project, projection_radius
from zoo.errors import CheckpointError, UserError
from zoo.lm.helpers import add_lora, cache_argument, context_length, load_causal_lm
from zoo.module import ZooModule

METHODS = ("cpt", "icl", "prompt_tuning", "lora", "full")
PROMPT_METHODS = ("cpt", "icl", "prompt_tuning")  # PEFT prepends virtual tokens
CONTEXT_METHODS = ("cpt", "icl")  # the k examples stand before the query


def cut(value: Any, n: int = 80) -> str:
    """``repr(value)``, cut to ``n`` characters: an error stays one readable line whatever a value holds."""
    text = repr(value)
    return text if len(text) <= n else f"{text[:n - 15]}... ({len(text)} characters)"


def check_examples(examples: Sequence[Sequence[str]], label_words: Sequence[str], where: str = "--model.examples") -> None:
    """Every example's label word is one of the label words: an example labelled otherwise would train the
    model toward a word it never classifies into. Else an error naming the example (and ``where`` it came from)."""
    for n, example in enumerate(examples, 1):
        word = example[1] if len(example) == 2 else None
        if word in label_words:
            continue
        if word is None:
            raise UserError(f"{where}: example {n} is {cut(list(example))}; an example is a pair [text, label word]")
        close = next((w for w in label_words if w.strip() == str(word).strip()), None)
        hint = f" (mind the spaces: the label word is {close!r})" if close is not None else ""
        raise UserError(f"{where}: example {n} ({str(example[0])[:40]!r}) has the label word {cut(word, 40)}, which is not "
                        f"one of the label words {list(label_words)} (--model.label_words, --data.label_map){hint}")


class CPT(ZooModule):
    """Few-shot classification with a causal LM: CPT, or ICL, prompt tuning, LoRA, full fine-tuning."""

    curve_metrics = ("val/acc", "train/loss")
    model_hparams = ("base",)  # names of models to load: offline only where read from a file

    def __init__(
        self,
        method: Literal["cpt", "icl", "prompt_tuning", "lora", "full"] = "cpt",
        base: str = "tiny-lm",
        examples: list[tuple[str, str]] | None = None,
        label_words: list[str] | None = None,
        input_template: str = "input: {}",
        output_template: str = "output: {}",
        intra_separator: str = " ",
        inter_separator: str = "\n",
        max_text_tokens: int | None = None,
        epsilon: float = 0.2,
        format_epsilon: float = 0.1,
        loss_decay: float = 0.95,
        hide_own_example: bool = False,
        balance_classes: bool = False,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        schedule_steps: int | None = None,
        num_virtual_tokens: int = 16,
        lora_r: int = 8,
        lora_alpha: float = 16.0,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            method: cpt, icl (the context, untrained), prompt_tuning, lora or full (fine-tuning).
            base: the causal LM: a zoo id (``tiny-lm``), a save_pretrained directory or an HF hub name.
            examples: the k labelled examples as [text, label word] pairs: CPT's context and every method's
                training set. Left empty, the data module fills them with its draw (--data.k, --data.draw_seed).
                A model that starts from a release (init_from) draws its own from the data: the release's
                examples are the release's training set, not this run's (docs/cpt.md, "Fine-tuning a release").
            label_words: the word of each class, in class order; filled from --data.label_map where empty.
            input_template: how an example's text is written; ``{}`` is the text.
            output_template: how its label is written; ``{}`` is the label word.
            intra_separator: between an example's input and output.
            inter_separator: after each example of the context.
            max_text_tokens: tokens of each text kept (the rest cut). Empty: for cpt and icl as many as let
                the k examples and a query fit the model's positions, else as many as the model takes.
            epsilon: CPT's projection radius ε for the input tokens (scaled by √(d/2048)).
            format_epsilon: CPT's projection radius for the input and output templates (scaled likewise).
            loss_decay: CPT's loss weight γ per example back from the query (1: no decay).
            hide_own_example: CPT's training queries are the context's own examples; hidden (True), a query
                does not attend to its own example in the context, so its label cannot be copied from there.
            balance_classes: weigh each label token of CPT's loss by n / (C · n_c), its class's share of the k
                examples inverted (``balance_weights``), so that an uneven draw does not teach the majority label.
            lr: AdamW learning rate (linear decay to 0 over schedule_steps, as transformers' Trainer).
            weight_decay: AdamW weight decay.
            schedule_steps: steps of the linear decay; the trainer's max_steps when not given.
            num_virtual_tokens: trained tokens of prompt tuning.
            lora_r: rank of the LoRA adapters.
            lora_alpha: LoRA scale α (the update is α/r · B A).
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__()
        if method not in METHODS:
            raise UserError(f"--model.method {method!r}: one of {', '.join(METHODS)}")
        for name, value in (("epsilon", epsilon), ("format_epsilon", format_epsilon)):
            if value < 0:
                raise UserError(f"--model.{name} must be at least 0, got {value}")
        if not 0 < loss_decay <= 1:
            raise UserError(f"--model.loss_decay must lie in (0, 1], got {loss_decay}")
        #: the context of the release this model starts from, where this run draws its own instead (None else)
        self.release_examples: list[list[str]] | None = None
        if init_from:
            examples, label_words = self._leave_release_context(init_from, examples, label_words)
        self.save_hyperparameters()
        if self.release_examples is not None:  # LightningCLI gives save_hyperparameters its own values: set ours
            for hp in (self.hparams, self._hparams_initial):
                hp.update(examples=examples, label_words=label_words)
        self.templates = Templates(input_template, output_template, intra_separator, inter_separator)
        self.templates.check()
        if examples is not None and label_words is not None:
            check_examples(examples, label_words)
        try:
            self.model, self.tokenizer = load_causal_lm(base)
        except UserError:  # a CheckpointError (a tampered release) stays one
            raise
        except ValueError as e:
            raise UserError(str(e)) from None
        if self.tokenizer is None:
            raise UserError(f"--model.base {base}: the model has no tokenizer beside it; CPT writes text")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.positions = context_length(self.model) or 1 << 20
        self.n_prefix = 0
        self._share, self._shared = False, None  # the context's logits and keys and values, shared in evaluation
        self.val_acc, self.test_acc = MeanMetric(), MeanMetric()
        self.example_input_array = torch.arange(3, 19).remainder(self.model.config.vocab_size).view(2, 8)
        self.register_buffer("context_ids", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("context_types", torch.zeros(0, dtype=torch.long), persistent=False)
        self._built = False
        if method not in CONTEXT_METHODS or (examples is not None and label_words is not None):
            self._build()  # else the context waits for the data's draw and label words (set_task)

    # -- the task: examples, label words, the model around them -------------------------------------

    def _leave_release_context(self, init_from: str, examples: Any, label_words: Any) -> tuple[Any, Any]:
        """Examples (and label words) that are the release's own, as --model.init_from fills them in, are left
        empty for the data module's draw: fine-tuning a release trains on this run's data. Examples given
        otherwise stay."""
        from zoo import hub

        _, release, _ = hub.release_spec(init_from)
        own = release.get("examples")
        if own is None or (examples is not None and [list(e) for e in examples] != [list(e) for e in own]):
            return examples, label_words
        self.release_examples = [list(e) for e in own]
        if label_words is not None and list(label_words) == list(release.get("label_words") or []):
            label_words = None  # the data's label map gives the words
        return None, label_words

    def set_task(self, examples: list[tuple[str, str]], label_words: list[str]) -> None:
        """The k examples and the label words from the data module, where the model has none yet (a model
        that holds its examples, from --model.examples or a checkpoint, keeps them; one that starts from a
        release has none: it draws its own); then the method's model is built."""
        hp = self.hparams
        if hp.label_words is not None and list(hp.label_words) != list(label_words):
            raise UserError(f"the model's label words {list(hp.label_words)} differ from the data's {list(label_words)} "
                            "(--data.label_map): a model classifies into the words it was trained with")
        if hp.examples is None:
            hp["examples"] = [list(e) for e in examples]
        check_examples(hp.examples, label_words)
        hp["label_words"] = list(label_words)
        # the run's hparams.yaml (written from the initial hyperparameters) holds the context it trains
        self._hparams_initial.update(examples=[list(e) for e in hp.examples], label_words=list(label_words))
        if not self._built:
            self._build()

    def text_budget(self) -> int:
        hp = self.hparams
        if hp.max_text_tokens is not None:
            return hp.max_text_tokens
        words = hp.label_words or [w for _, w in hp.examples or []] or [""]
        if hp.method in CONTEXT_METHODS:
            return text_budget(self.positions, len(hp.examples), self.tokenizer, self.templates, words)
        return self.positions - overhead(self.tokenizer, self.templates, words) - self.n_prefix

    def _build(self) -> None:
        from peft import CPTConfig, PromptTuningConfig, PromptTuningInit, get_peft_model

        hp = self.hparams
        self._built = True
        if hp.method in CONTEXT_METHODS:
            if not hp.examples:
                raise UserError("--model.examples: CPT's context needs at least one example")
            for n, (text, word) in enumerate(hp.examples, 1):
                if not str(text).strip() or not str(word).strip():
                    raise UserError(f"--model.examples: example {n} has an empty text or label word")
            ids, types = build_context(self.tokenizer, self.templates, [tuple(e) for e in hp.examples], self.text_budget())
            config = CPTConfig(task_type="CAUSAL_LM", cpt_token_ids=ids, cpt_mask=[1] * len(ids),
                               cpt_tokens_type_mask=types, opt_weighted_loss_type="decay" if hp.loss_decay < 1 else "none",
                               opt_loss_decay_factor=hp.loss_decay, opt_projection_epsilon=hp.epsilon,
                               opt_projection_format_epsilon=hp.format_epsilon)
            self.model = get_peft_model(self.model, config)
            self.context_ids, self.context_types = torch.tensor(ids), torch.tensor(types)
            self.n_prefix = len(ids)
            if hp.method == "icl":
                self.model.requires_grad_(False)
            else:
                self.radius = projection_radius(self.context_types, hp.epsilon, hp.format_epsilon,
                                                self.prompt().delta_embedding.weight.shape[1])
        elif hp.method == "prompt_tuning":
            config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=hp.num_virtual_tokens,
                                        prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB)
            self.model = get_peft_model(self.model, config)
            self.n_prefix = hp.num_virtual_tokens
        elif hp.method == "lora":
            self.model = add_lora(self.model, hp.lora_r, hp.lora_alpha)
        self.model.train()  # from_pretrained leaves the model in eval mode; Lightning sets the mode per stage

    def prompt(self):
        """PEFT's CPTEmbedding (cpt, icl): ``embedding`` E_C (frozen) and ``delta_embedding`` δ."""
        return self.model.prompt_encoder["default"]

    # -- starting from a release ----------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        init_from = self.hparams.get("init_from")
        if init_from and self._initialised_from != init_from:
            self._start_from(init_from)
            self._initialised_from = init_from
        super().setup(stage)

    def _start_from(self, init_from: str) -> None:
        """The release's weights, where they fit this model; for a context other than the release's (cpt), the
        δ of the tokens both contexts share in the same role and example slot (``transfer_delta``). A
        resumed run restores its own weights after this."""
        from zoo import hub
        from zoo.cpt.context import transfer_delta
        from zoo.module import load

        release = load(init_from)
        state = release.state_dict()
        if (type(release) is type(self) and self.hparams.method in CONTEXT_METHODS
                and release.hparams.method == self.hparams.method and not torch.equal(release.context_ids, self.context_ids)):
            if self.hparams.method == "icl":
                return  # in-context learning trains nothing: nothing of the release's carries over but its settings
            with torch.no_grad():
                delta = transfer_delta(release.context_ids, release.context_types,
                                       release.prompt().delta_embedding.weight, self.context_ids, self.context_types)
                self.prompt().delta_embedding.weight.copy_(project(delta, self.radius * (1 - 1e-6)))
            return
        mismatch = hub.state_mismatch(self, state)
        if type(release) is not type(self) or mismatch:
            own, theirs = dict(self.hparams), dict(release.hparams)
            differ = [f"{k} {cut(theirs[k], 40)} (release) vs {cut(own[k], 40)} (this model)" for k in sorted(theirs)
                      if k in own and k not in ("init_from", "examples") and theirs[k] != own[k]]
            what = mismatch or f"a release of {type(release).__name__}"
            what = what if len(what) <= 160 else f"{what[:150]}... ({len(what)} characters)"
            raise CheckpointError(f"{init_from}: does not fit this model ({what})"
                                  + (f"; hyperparameters that differ: {'; '.join(differ)}" if differ else ""))
        self.load_state_dict(state)

    # -- encoding text ------------------------------------------------------------------------------

    def encode_examples(self) -> list[tuple[list[int], list[int]]]:
        """The k examples as training queries: (ids, types) with the types of example 0."""
        budget = self.text_budget()
        return [encode_example(self.tokenizer, self.templates, text, word, budget, with_inter_separator=False)
                for text, word in self.hparams.examples]

    def encode_query(self, text: str) -> dict[str, Any]:
        """One row per label word: the query written up to the output template, then the word; the word's
        tokens marked as targets."""
        q, _ = encode_example(self.tokenizer, self.templates, text, None, self.text_budget())
        rows, targets = [], []
        for word in self.hparams.label_words:
            w = self.tokenizer(word, add_special_tokens=False)["input_ids"]
            rows.append(q + w)
            targets.append([0] * len(q) + [1] * len(w))
        return {"rows": rows, "targets": targets}

    # -- forward ------------------------------------------------------------------------------------

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Next-token logits [B, T, V] of the query tokens (after the method's context or virtual tokens)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits[:, self.n_prefix:]

    @torch.no_grad()
    def classify(self, texts: list[str]) -> list[str]:
        """The label word the model gives each text."""
        from zoo.cpt.data import collate_queries

        items = [{"label": 0, **self.encode_query(t)} for t in texts]
        batch = {k: v.to(self.device) for k, v in collate_queries(items, self.pad_id).items()}
        scores = self.scores(batch)
        return [self.hparams.label_words[i] for i in scores.argmax(-1).tolist()]

    def scores(self, batch: dict[str, Tensor]) -> Tensor:
        """log p(w_c | context, query) [B, C] of each label word."""
        ids, mask, target = batch["input_ids"], batch["attention_mask"], batch["target"]
        B, C = batch["label"].shape[0], ids.shape[0] // batch["label"].shape[0]
        words = [self.tokenizer(w, add_special_tokens=False)["input_ids"] for w in self.hparams.label_words]
        single = all(len(w) == 1 for w in words)
        if single:  # each word one token: the query's first row scores them all (the logits before the word
            ids, mask, target = ids[::C], mask[::C], target[::C]  # cannot depend on it), a C-th of the work
        first = int(target.float().argmax(-1).min())  # the earliest label-word token of the batch
        keep = ids.shape[1] - first + 1  # logits from the position that predicts it on
        if self.hparams.method in CONTEXT_METHODS:
            logits = self._after_context(ids, mask, keep)[1]
        else:
            logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
        if single:
            before = target[:, -keep:].float().argmax(-1) - 1  # the position that predicts the word
            logp = torch.log_softmax(logits[torch.arange(B, device=ids.device), before].float(), -1)
            return logp[:, [w[0] for w in words]]
        return label_scores(logits, ids, target).view(B, -1)

    def _context(self, keep: int = 0) -> tuple[Tensor, Any]:
        """E_C + δ (as PEFT's forward computes it) through the base model: its logits [1, n, V] (only the
        last position's where ``keep`` > 0) and its keys and values."""
        base = self.model.get_base_model()
        prompt = self.model.get_prompt(batch_size=1)
        out = base(inputs_embeds=prompt.to(base.get_input_embeddings().weight.dtype), use_cache=True,
                   logits_to_keep=0 if keep == 0 else 1)
        return out.logits, out["cache"] if "cache" in out else out["past_key_values"]

    def _after_context(self, ids: Tensor, mask: Tensor, keep: int = 0,
                       context_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The context's logits [1, n, V] (only its last position's where ``keep`` > 0) and the last ``keep``
        positions' logits of the rows after it (all where 0), the context run once for the batch and its
        keys and values shared: what PEFT's forward gives on every row, at a fraction of the cost; in
        training the gradients reach δ through them. An evaluation epoch runs the context once for all
        its batches (δ does not move within it). ``context_mask`` [B, n] hides context tokens from a row (0)."""
        base = self.model.get_base_model()
        if self._share and keep > 0:
            if self._shared is None:
                self._shared = self._context(keep=1)
            logits, cache = self._shared[0], copy.deepcopy(self._shared[1])
        else:
            logits, cache = self._context(keep)
        cache.batch_repeat_interleave(ids.shape[0])
        if context_mask is None:
            context_mask = mask.new_ones(ids.shape[0], self.n_prefix)
        mask = torch.cat([context_mask.to(mask.dtype), mask], 1)
        rows = base(input_ids=ids, attention_mask=mask, logits_to_keep=keep, **{cache_argument(base): cache}).logits
        return logits, rows

    # -- training -----------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        if self.hparams.method == "icl":
            return None  # in-context learning trains nothing
        ids, types = batch["input_ids"], batch["types"]
        if self.hparams.method == "cpt":
            B = ids.shape[0]
            hidden = self.own_example_mask(batch["example"]) if self.hparams.hide_own_example else None
            context, rows = self._after_context(ids, batch["attention_mask"], context_mask=hidden)
            logits = torch.cat([context.expand(B, -1, -1), rows], 1)  # PEFT's forward's logits, row by row
            query_types = torch.where(types > 0, types + self.context_types.max(), types)  # after the context's
            weights = self.class_weights(batch["example"], ids.shape[1]) if self.hparams.balance_classes else None
            ids = torch.cat([self.context_ids.expand(B, -1), ids], 1)
            types = torch.cat([self.context_types.expand(B, -1), query_types], 1)
            loss = cpt_loss(logits, ids, types, self.hparams.loss_decay, weights)
        else:
            loss = cpt_loss(self(ids, batch["attention_mask"]), ids, types)
        if self.logging_step():
            self.log("train/loss", loss, prog_bar=True, batch_size=ids.shape[0])
        return loss

    def class_weights(self, example: Tensor, query_length: int) -> Tensor:
        """[B, n + T]: each token's ``balance_weights`` weight by the example it belongs to (context example i:
        types 4i+1 … 4i+4; a query row: its ``example``), 1 on the separators."""
        words = list(self.hparams.label_words)
        w = balance_weights(torch.tensor([words.index(y) for _, y in self.hparams.examples])).to(example.device)
        types = self.context_types.to(example.device)
        context = torch.where(types > 0, w[((types - 1) // 4).clamp(0, len(w) - 1)], torch.ones_like(w[:1]))
        query = w[example][:, None].expand(-1, query_length)
        return torch.cat([context.expand(example.shape[0], -1), query], 1)

    def own_example_mask(self, example: Tensor) -> Tensor:
        """[B, n]: 0 on the context's tokens of each row's own example (types 4i+1 … 4i+4 for example i), 1 else."""
        types = self.context_types.to(example.device)
        own = (types[None, :] > 0) & ((types[None, :] - 1) // 4 == example[:, None])
        return (~own).long()

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Keep δ on its ball after every step (PEFT projects in the forward pass; projecting right after
        the step too makes the stored δ, and so every checkpoint and release, the projected one)."""
        super().optimizer_step(*args, **kwargs)
        if self.hparams.method == "cpt":
            delta = self.prompt().delta_embedding.weight
            with torch.no_grad():
                # just inside the ball, so that PEFT's projection on every forward call leaves δ bit for bit
                delta.copy_(project(delta, self.radius.to(delta.device) * (1 - 1e-6)))

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return None
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        K = self.schedule_steps()
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1 - step / K))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- evaluation ---------------------------------------------------------------------------------

    def _evaluate(self, metric: MeanMetric, name: str, batch: dict[str, Tensor]) -> None:
        correct = (self.scores(batch).argmax(-1) == batch["label"]).float()
        metric.update(correct)
        self.log(name, metric, prog_bar=True, batch_size=correct.shape[0])

    def _share_context(self, on: bool) -> None:
        """Within an evaluation epoch the context is run at its first batch and shared by the rest."""
        self._share, self._shared = on, None

    def on_validation_epoch_start(self) -> None:
        self._share_context(True)

    def on_validation_epoch_end(self) -> None:
        self._share_context(False)

    def on_test_epoch_start(self) -> None:
        self._share_context(True)

    def on_test_epoch_end(self) -> None:
        self._share_context(False)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(self.val_acc, "val/acc", batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(self.test_acc, "test/acc", batch)

    # -- releases: the trained tensors only; the base model comes from its own release ---------------

    def trained_state(self) -> dict[str, Tensor]:
        """What the method changed: every weight for full fine-tuning, else the trainable tensors (and
        CPT's initial context embedding E_C)."""
        if self.hparams.method == "full":
            return {k: v.clone() for k, v in self.state_dict().items()}  # tied weights saved apart
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.state_dict().items() if k in names or "prompt_encoder" in k}

    def save_release(self, directory: Path) -> None:
        from zoo import hub

        hub.write_safetensors(self.trained_state(), Path(directory) / hub.WEIGHTS)

    @classmethod
    def load_release(cls, directory: Path, init_args: dict[str, Any]) -> "CPT":
        from zoo import hub

        if init_args.get("examples") is not None and init_args.get("label_words") is not None:
            check_examples(init_args["examples"], init_args["label_words"], f"{Path(directory) / hub.HPARAMS}: examples")
        model = cls(**{k: v for k, v in init_args.items() if k != "init_from"})
        weights = Path(directory) / hub.WEIGHTS
        state = hub.read_weights(weights)
        expected = set(model.trained_state())
        if set(state) != expected:
            raise hub.CheckpointError(f"{weights}: holds {sorted(set(state) ^ expected)[:5]} where the model "
                                      "expects otherwise; the release does not match its hparams.yaml")
        model.load_state_dict(state, strict=False)
        return model

    def release_metrics(self) -> dict[str, float]:
        """Accuracy on the whole test split of the data the release was trained on."""
        trainer = self.trainer if self._trainer is not None else None
        if trainer is None or trainer.datamodule is None:
            return {}
        metric = MeanMetric()
        was_training = self.training
        self.eval()
        with torch.no_grad():
            for batch in trainer.datamodule.test_dataloader():
                batch = {k: v.to(self.device) for k, v in batch.items()}
                metric.update((self.scores(batch).argmax(-1) == batch["label"]).float())
        self.train(was_training)
        return {"test/acc": float(metric.compute()), "k": float(len(self.hparams.examples))}
