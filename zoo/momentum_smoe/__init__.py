"""MomentumSMoE (Teo & Nguyen, NeurIPS 2024): SMoE, MomentumSMoE, AdamSMoE, Robust MomentumSMoE."""
from zoo.momentum_smoe.module import MomentumSMoE

__all__ = ["MomentumSMoE"]
