"""Deep GA (Such et al., 2017): python recipes/deep_ga.py fit [--help]"""
from zoo.cli import ZooCLI
from zoo.deep_ga import DeepGA


def main(args=None, run=True):
    return ZooCLI(DeepGA, args=args, run=run)


if __name__ == "__main__":
    main()
