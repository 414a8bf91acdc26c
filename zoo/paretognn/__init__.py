"""ParetoGNN: multi-task self-supervised GNNs whose pretext tasks are reconciled by multiple-gradient descent."""
from zoo.paretognn.data import GraphDataModule
from zoo.paretognn.module import ParetoGNN

__all__ = ["ParetoGNN", "GraphDataModule"]
