"""Context-aware Prompt Tuning and its few-shot baselines (ICL, prompt tuning, LoRA, full fine-tuning)."""
from zoo.cpt.data import FewShotDataModule
from zoo.cpt.module import CPT

__all__ = ["CPT", "FewShotDataModule"]
