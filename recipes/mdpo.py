"""Mirror Descent Policy Optimization (Tomar et al., ICLR 2022): python recipes/mdpo.py fit [--help]"""
from zoo.cli import ZooCLI
from zoo.mdpo import MDPO


def main(args=None, run=True):
    return ZooCLI(MDPO, args=args, run=run)


if __name__ == "__main__":
    main()
