"""Pairwise preference models and Bradley–Terry reward models: python recipes/preference.py fit [--help]"""
from zoo.cli import ZooCLI
from zoo.preference import PreferenceData, PreferenceModel


def main(args=None, run=True):
    return ZooCLI(PreferenceModel, PreferenceData, args=args, run=run)


if __name__ == "__main__":
    main()
