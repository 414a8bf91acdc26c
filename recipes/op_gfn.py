"""Order-Preserving GFlowNets (Chen & Mauch, ICLR 2024): python recipes/op_gfn.py fit [--help]"""
from zoo.cli import ZooCLI
from zoo.op_gfn import OPGFN


def main(args=None, run=True):
    return ZooCLI(OPGFN, args=args, run=run)


if __name__ == "__main__":
    main()
