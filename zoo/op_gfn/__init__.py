"""Order-Preserving GFlowNets: sample candidates in proportion to a reward learned from their order."""
from zoo.op_gfn.module import OPGFN

__all__ = ["OPGFN"]
