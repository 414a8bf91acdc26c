"""The zoo's base causal LM (GPT-2 architecture, or any HF causal LM): python recipes/lm.py fit [--help]"""
from zoo.cli import ZooCLI
from zoo.lm import CausalLM, TextDataModule


def main(args=None, run=True):
    return ZooCLI(CausalLM, TextDataModule, args=args, run=run)


if __name__ == "__main__":
    main()
