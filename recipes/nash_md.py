"""Nash learning from human feedback (Munos et al., ICML 2024), Nash-MD: python recipes/nash_md.py fit [--help]"""
from zoo.cli import ZooCLI
from zoo.nash_md import NashMD, PromptData


def main(args=None, run=True):
    return ZooCLI(NashMD, PromptData, args=args, run=run)


if __name__ == "__main__":
    main()
