"""Nash learning from human feedback: Nash-MD, tabular and for language models, with its baselines."""
from zoo.nash_md.data import PromptData
from zoo.nash_md.module import NashMD

__all__ = ["NashMD", "PromptData"]
