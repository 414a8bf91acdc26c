"""Mirror Descent Policy Optimization (Tomar et al., ICLR 2022): on-policy and off-policy (SAC-like)."""
from zoo.mdpo.module import MDPO

__all__ = ["MDPO"]
