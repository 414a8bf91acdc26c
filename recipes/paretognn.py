"""ParetoGNN (Ju et al., ICLR 2023): python recipes/paretognn.py fit [--help]"""
from zoo.cli import ZooCLI
from zoo.paretognn import GraphDataModule, ParetoGNN


class ParetoGNNCLI(ZooCLI):
    """ZooCLI with the encoder's input width taken from the data."""

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.num_features", "model.in_channels", apply_on="instantiate")


def main(args=None, run=True):
    return ParetoGNNCLI(ParetoGNN, GraphDataModule, args=args, run=run)


if __name__ == "__main__":
    main()
