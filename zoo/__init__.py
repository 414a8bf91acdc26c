"""zoo: methods from the optimization literature as Lightning modules, each correct to its paper.

    import zoo
    zoo.list_models()                      # released checkpoints
    m = zoo.load("op-gfn-hypergrid")       # the LightningModule, in eval mode, sha256-verified
"""
from zoo.hub import list_models
from zoo.module import load

__version__ = "0.1.0"
__all__ = ["load", "list_models", "__version__"]
