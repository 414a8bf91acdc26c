"""A user environment for Order-Preserving GFlowNets: binary strings built left to right.

    python recipes/op_gfn.py fit --model.env data/op_gfn/bitstrings.py:BitStrings \
        --model.env_kwargs '{"n": 8}' --model.loss op_tb

A state is [length, b_1, …, b_n] (unfilled bits are 0). Action 0 or 1 appends that bit; the stop
action is allowed only once the string is full. The objective, larger is better, counts the
occurrences of a motif plus one, so that it is also a positive reward for TB.
"""
import itertools

import torch


class BitStrings:
    n_objectives = 1

    def __init__(self, n: int = 8, motif: str = "101") -> None:
        if n < len(motif):
            raise ValueError(f"--model.env_kwargs: n={n} is shorter than the motif {motif!r}")
        self.n, self.motif = n, torch.tensor([int(c) for c in motif])
        self.state_dim, self.n_actions, self.obs_dim, self.max_length = n + 1, 3, 2 * n, n

    def initial(self, k):
        return torch.zeros(k, self.n + 1, dtype=torch.long)

    def encode(self, states):
        filled = torch.arange(self.n, device=states.device) < states[:, :1]
        return torch.cat([filled.float(), states[:, 1:].float()], dim=1)

    def forward_mask(self, states):
        full = states[:, 0] == self.n
        return torch.stack([~full, ~full, full], dim=1)

    def backward_mask(self, states):
        length = states[:, 0]
        last = states.gather(1, length.clamp(min=1)[:, None]).squeeze(1)  # the bit appended last
        return torch.nn.functional.one_hot(last, 2).bool() & (length > 0)[:, None]

    def step(self, states, actions):
        out = states.clone()
        rows = torch.arange(states.shape[0], device=states.device)
        out[rows, states[:, 0] + 1] = actions
        out[:, 0] += 1
        return out

    def objectives(self, states):
        bits = states[:, 1:]
        m = len(self.motif)
        windows = bits.unfold(1, m, 1)  # [k, n − m + 1, m]
        hits = (windows == self.motif.to(bits.device)).all(-1).sum(-1)
        return (1.0 + hits.float())[:, None]

    # optional: enumeration, for exact L1, modes found and top-k
    def all_states(self):
        rows = []
        for length in range(self.n + 1):
            for bits in itertools.product((0, 1), repeat=length):
                rows.append([length, *bits, *([0] * (self.n - length))])
        return torch.tensor(rows)

    def index(self, states):
        # strings of length L start at 2^L − 1; within a length, the bits read as a binary number
        length = states[:, 0]
        weights = 2 ** torch.arange(self.n - 1, -1, -1, device=states.device)
        value = (states[:, 1:] * weights).sum(-1) >> (self.n - length)
        return (2**length - 1) + value
