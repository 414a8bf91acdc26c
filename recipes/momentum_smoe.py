"""MomentumSMoE (Teo & Nguyen, NeurIPS 2024): python recipes/momentum_smoe.py fit [--help]"""
from zoo.cli import ZooCLI
from zoo.lm import TextDataModule
from zoo.momentum_smoe import MomentumSMoE


def main(args=None, run=True):
    return ZooCLI(MomentumSMoE, TextDataModule, args=args, run=run)


if __name__ == "__main__":
    main()
