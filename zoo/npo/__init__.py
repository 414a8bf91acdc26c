"""Negative Preference Optimization (Zhang et al., COLM 2024) and the TOFU unlearning pipeline."""
from zoo.npo.data import TOFUDataModule, fictitious_authors
from zoo.npo.module import NPO

__all__ = ["NPO", "TOFUDataModule", "fictitious_authors"]
