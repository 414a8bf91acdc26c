"""Context-aware Prompt Tuning (Blau et al., 2024) and its baselines: python recipes/cpt.py fit [--help]"""
from zoo.cli import ZooCLI
from zoo.cpt import CPT, FewShotDataModule


def main(args=None, run=True):
    return ZooCLI(CPT, FewShotDataModule, args=args, run=run)


if __name__ == "__main__":
    main()
