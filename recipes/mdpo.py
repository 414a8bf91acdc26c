"""Mirror Descent Policy Optimization (Tomar et al., ICLR 2022): python recipes/mdpo.py fit [--help]

Two algorithms, chosen by the config's ``model.class_path`` (or ``--model OnPolicyMDPO|OffPolicyMDPO``):
zoo.mdpo.OnPolicyMDPO (default.yaml: CartPole-v1) and zoo.mdpo.OffPolicyMDPO (pendulum.yaml);
``--model.help OffPolicyMDPO`` lists a class's hyperparameters.
"""
from zoo.cli import ZooCLI
from zoo.mdpo import MDPO


def main(args=None, run=True):
    return ZooCLI(MDPO, args=args, run=run, subclass_mode_model=True)


if __name__ == "__main__":
    main()
