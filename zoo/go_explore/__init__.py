"""Go-Explore (Ecoffet et al., Nature 2021): remember, return, explore; then robustify by the backward algorithm."""
from zoo.go_explore.module import GoExplore

__all__ = ["GoExplore"]
