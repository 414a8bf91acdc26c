"""Go-Explore (Ecoffet et al., Nature 2021): python recipes/go_explore.py fit [--help]"""
from zoo.cli import ZooCLI
from zoo.go_explore import GoExplore


def main(args=None, run=True):
    return ZooCLI(GoExplore, args=args, run=run)


if __name__ == "__main__":
    main()
