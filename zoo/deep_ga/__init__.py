"""Deep GA (Such et al., 2017): genetic algorithms for deep policies, seed-chain encoding, novelty search."""
from zoo.deep_ga.data import HardMaze
from zoo.deep_ga.module import DeepGA

__all__ = ["DeepGA", "HardMaze"]
