"""Mirror Descent Policy Optimization (Tomar et al., ICLR 2022): on-policy and off-policy (SAC-like)."""
from zoo.mdpo.module import MDPO
from zoo.mdpo.off_policy import OffPolicyMDPO
from zoo.mdpo.on_policy import OnPolicyMDPO

__all__ = ["MDPO", "OffPolicyMDPO", "OnPolicyMDPO"]
