"""Negative Preference Optimization on TOFU (Zhang et al., COLM 2024): python recipes/npo.py fit [--help]"""
from zoo.cli import ZooCLI
from zoo.npo import NPO, TOFUDataModule


def main(args=None, run=True):
    return ZooCLI(NPO, TOFUDataModule, args=args, run=run)


if __name__ == "__main__":
    main()
