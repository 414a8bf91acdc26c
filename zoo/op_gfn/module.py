"""Order-Preserving GFlowNets (Chen & Mauch, ICLR 2024) and the GFlowNet baselines they compare to.

    loss = tb | db          trajectory / detailed balance on the reward R(x)^β
    loss = op_tb | op_db    the reward the flow implies, log R̂(x), trained only to respect the order
                            of the candidates: pairs for one objective, Pareto sets for several;
                            OP-DB's order term weighted by λ_OP (order_weight)
    kl_weight = λ_KL        the official "-KL" regulariser λ_KL · KL(U ‖ P_B) of a learned P_B

Each training step samples ``batch_size`` trajectories on-policy (with an ε-uniform exploration
mixture), evaluates the loss of zoo/op_gfn/objective.py on them and takes one Adam step. log Z is a
parameter only under ``tb``, the one loss that uses it. Validation enumerates the state space, where
the environment allows it, for the exact sampling distribution.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from zoo.errors import UserError
from zoo.module import Steps, ZooModule
from zoo.op_gfn.data import Environment, make_env
from zoo.op_gfn.nets import mlp
from zoo.op_gfn.objective import (
    backward_kl_to_uniform,
    db_log_reward,
    detailed_balance,
    exact_terminal_distribution,
    hypervolume,
    l1_distance,
    order_agreement,
    order_preserving_loss,
    pairwise_order_targets,
    pareto_mask,
    pareto_targets,
    tb_log_reward,
    trajectory_balance,
)

warnings.filterwarnings("ignore", ".*does not have many workers.*")


class VisitedStates(Metric):
    """Which states of an enumerable environment the sampler has produced so far (max over ranks)."""

    full_state_update = False

    def __init__(self, num_states: int) -> None:
        super().__init__()
        self.add_state("visited", torch.zeros(num_states), dist_reduce_fx="max", persistent=True)

    def update(self, index: Tensor) -> None:
        self.visited[index] = 1.0

    def compute(self) -> Tensor:
        return self.visited > 0


@dataclass
class Trajectories:
    """A batch of B trajectories padded to T steps; step t goes states[t] → states[t+1] by actions[t]."""

    states: Tensor  # [T+1, B, state_dim]
    actions: Tensor  # [T, B], −1 once the trajectory has stopped
    log_pf: Tensor  # [T, B], log P_F(a_t | s_t), 0 on padding
    log_pb: Tensor  # [T, B], log P_B(s_t | s_{t+1}) for moves, 0 on stops and padding
    moved: Tensor  # [T, B] bool: a non-stop action was taken
    stopped: Tensor  # [T, B] bool: the stop action was taken
    log_pb_all: Tensor  # [M, A−1]: log P_B of every backward action in the M states reached by a move
    parents: Tensor  # [M, A−1] bool: the valid backward actions of those states

    @property
    def terminal(self) -> Tensor:
        return self.states[-1]


def masked_log_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    return logits.float().masked_fill(~mask, -math.inf).log_softmax(-1)


class OPGFN(ZooModule):
    curve_metrics = ("val/l1", "val/order_agreement", "val/mode_mass", "val/pareto_mass", "train/loss")
    code_hparams = ("env",)

    def __init__(
        self,
        env: str = "hypergrid",
        ndim: int = 2,
        height: int = 8,
        R0: float = 0.1,
        R1: float = 0.5,
        R2: float = 2.0,
        objectives: Sequence[str] = ("branin", "currin"),
        env_kwargs: dict | None = None,
        loss: Literal["tb", "db", "op_tb", "op_db"] = "tb",
        beta: float = 1.0,
        kl_weight: float = 0.0,
        order_weight: float = 0.1,
        hidden_dim: int = 256,
        n_hidden_layers: int = 2,
        uniform_pb: bool = False,
        epsilon: float = 0.0,
        batch_size: int = 128,
        lr: float = 1e-3,
        lr_Z: float = 0.1,
        steps_per_epoch: int = 100,
        top_k: int = 10,
        init_from: str | None = None,
    ) -> None:
        """
        Args:
            env: ``hypergrid``, ``moo_grid`` (the paper's multi-objective grid) or ``package.module:Class``.
            ndim: hypergrid dimension D.
            height: grid side H (states {0, …, H−1}^D).
            R0: hypergrid reward floor; R1, R2: the outer-ring and mode bonuses.
            objectives: for ``moo_grid``, two to four of branin, currin, shubert, beale.
            env_kwargs: keyword arguments of a user environment class, taken as data ("11" stays a string).
            loss: ``tb``/``db`` train on R(x)^β; ``op_tb``/``op_db`` on the order only.
            beta: reward exponent of the tb/db baselines.
            kl_weight: λ_KL of the term λ_KL · KL(U ‖ P_B) that keeps a learned backward policy near the
                uniform one U (the official OP-TB/OP-DB's KL_weight: 0 by default, 0.1 in the "-KL"
                variants); any loss; nothing to do with ``uniform_pb``.
            order_weight: λ_OP, the weight of OP-DB's order term against its detailed balance (the
                official CE_weight, 0.1 in its commands); OP-TB's order term is its whole loss.
            hidden_dim: width of the policy MLPs.
            n_hidden_layers: hidden layers of the policy MLPs.
            uniform_pb: a fixed uniform backward policy instead of a learned one.
            epsilon: probability of a uniformly random valid action while sampling for training.
            batch_size: trajectories sampled per training step.
            lr: Adam learning rate of the networks.
            lr_Z: Adam learning rate of log Z (``tb`` only: no other loss uses log Z).
            steps_per_epoch: training steps between two validations.
            top_k: k of the mean reward of the best k distinct samples.
            init_from: start from a released checkpoint (id or path).
        """
        super().__init__()
        self.save_hyperparameters()
        self.env: Environment = make_env(env, ndim, height, R0, R1, R2, tuple(objectives), env_kwargs)
        if loss in ("tb", "db") and self.env.n_objectives > 1:
            raise UserError(f"--model.loss {loss} needs one reward but --model.env {env} has "
                             f"{self.env.n_objectives} objectives: use op_tb or op_db (Pareto order)")
        if loss in ("tb", "db") and env == "hypergrid" and R0 <= 0:
            raise UserError(f"--model.R0 must be > 0 for --model.loss {loss}: log R(x) is −inf where R(x) = 0")
        if not 0 <= epsilon <= 1:
            raise UserError(f"--model.epsilon must lie in [0, 1], got {epsilon}")
        for name, value in (("kl_weight", kl_weight), ("order_weight", order_weight)):
            if not math.isfinite(value) or value < 0:
                raise UserError(f"--model.{name} must be a finite number ≥ 0, got {value}")
        e = self.env
        self.pf = mlp(e.obs_dim, hidden_dim, n_hidden_layers, e.n_actions)
        self.pb = None if uniform_pb else mlp(e.obs_dim, hidden_dim, n_hidden_layers, e.n_actions - 1)
        self.log_flow = mlp(e.obs_dim, hidden_dim, n_hidden_layers, 1) if loss in ("db", "op_db") else None
        # log Z exists only where the loss uses it: an unused parameter would still be stepped by Adam
        self.log_Z = nn.Parameter(torch.zeros(())) if loss == "tb" else None
        n_states = len(e.all_states()) if hasattr(e, "all_states") else 0
        self.visited = VisitedStates(n_states)
        self.register_buffer("n_trajectories", torch.zeros((), dtype=torch.long))
        self.register_buffer("all_modes_at", torch.full((), -1, dtype=torch.long))
        states = e.all_states()[:32] if n_states else e.initial(2)
        self.example_input_array = e.encode(states)

    def forward(self, obs: Tensor) -> Tensor:
        """Logits of P_F over the actions (unmasked) for encoded states."""
        return self.pf(obs)

    # -- sampling ------------------------------------------------------------------------

    def sample_trajectories(self, n: int, epsilon: float = 0.0) -> Trajectories:
        """Roll out n trajectories (without gradients, on the live ones only), then score every
        transition in one batched pass of P_F and P_B, with gradients."""
        env, dev = self.env, self.device
        s = env.initial(n).to(dev)
        alive = torch.ones(n, dtype=torch.bool, device=dev)
        states, actions = [s], []
        with torch.no_grad():
            for _ in range(env.max_length + 1):
                live = s[alive]
                mask = env.forward_mask(live)
                probs = masked_log_softmax(self.pf(env.encode(live)), mask).exp()
                if epsilon > 0:
                    probs = (1 - epsilon) * probs + epsilon * mask / mask.sum(-1, keepdim=True)
                a = torch.full((n,), -1, dtype=torch.long, device=dev)
                a[alive] = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
                move = alive & (a != env.n_actions - 1)
                s = s.clone()
                s[move] = env.step(s[move], a[move])
                states.append(s)
                actions.append(a)
                alive = move
                if not alive.any():
                    break
            else:
                raise UserError(f"--model.env: trajectories ran past max_length={env.max_length} without stopping")
        return self.score_trajectories(torch.stack(states), torch.stack(actions))

    def score_trajectories(self, states: Tensor, actions: Tensor) -> Trajectories:
        """log P_F and log P_B of every transition of given trajectories (states [T+1, B, ·], a stopped
        trajectory repeating its last state; actions [T, B], −1 once stopped), with gradients."""
        env = self.env
        taken = actions >= 0
        stopped = actions == env.n_actions - 1
        moved = taken & ~stopped
        parents = states[:-1][taken]
        log_pf = masked_log_softmax(self.pf(env.encode(parents)), env.forward_mask(parents))
        log_pf = torch.zeros(taken.shape, device=states.device).index_put(
            taken.nonzero(as_tuple=True), log_pf.gather(1, actions[taken][:, None]).squeeze(1))
        log_pb, log_pb_all, parents = self.backward_log_probs(states[1:], actions, moved)
        return Trajectories(states, actions, log_pf, log_pb, moved, stopped, log_pb_all, parents)

    def backward_log_probs(self, children: Tensor, actions: Tensor, moved: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """log P_B(s_t | s_{t+1}) for the moves (0 elsewhere), computed only on the moves' children; and
        log P_B of every backward action of those children [M, A−1] with their valid-action mask."""
        out = torch.zeros(moved.shape, device=children.device)
        kids, acts = children[moved], actions[moved]
        mask = self.env.backward_mask(kids)
        if self.pb is None:
            log_pb_all = torch.where(mask, -mask.sum(-1, keepdim=True).float().log(), -math.inf)
        else:
            log_pb_all = masked_log_softmax(self.pb(self.env.encode(kids)), mask)
        if kids.shape[0] == 0:
            return out, log_pb_all, mask
        log_pb = log_pb_all.gather(1, acts[:, None]).squeeze(1)
        return out.index_put((moved.nonzero(as_tuple=True)), log_pb), log_pb_all, mask

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n terminal objects drawn from the trained sampler, LongTensor [n, state_dim]."""
        return self.sample_trajectories(n).terminal

    # -- the loss --------------------------------------------------------------------------

    def checked_objectives(self, x: Tensor) -> Tensor:
        obj = self.env.objectives(x).float()
        bad = ~torch.isfinite(obj).all(-1)
        if bad.any():
            raise UserError(f"--model.env {self.hparams.env}: objectives returned NaN or ±inf at state "
                             f"{x[bad][0].tolist()}")
        if self.hparams.loss in ("tb", "db") and (obj[:, 0] <= 0).any():
            i = (obj[:, 0] <= 0).nonzero()[0, 0]
            raise UserError(f"--model.env {self.hparams.env}: the reward must be > 0 for --model.loss "
                             f"{self.hparams.loss}, got {obj[i, 0].item()} at state {x[i].tolist()}")
        return obj

    def order_loss(self, log_r_hat: Tensor, obj: Tensor) -> Tensor:
        if obj.shape[1] == 1:  # a total order: random pairs of the batch, targets 1, ½, 0
            j = torch.randperm(obj.shape[0], generator=self.generator, device=self.generator.device).to(obj.device)
            targets = pairwise_order_targets(obj[:, 0], obj[j, 0])
            return order_preserving_loss(torch.stack([log_r_hat, log_r_hat[j]], dim=-1), targets)
        return order_preserving_loss(log_r_hat, pareto_targets(obj))  # Pareto: the whole batch is one set

    def loss_of(self, traj: Trajectories, obj: Tensor) -> Tensor:
        """The loss of the batch, with λ_KL · KL(U ‖ P_B) over the states reached by a move where
        ``kl_weight`` > 0 and P_B is learned."""
        loss = self.balance_loss(traj, obj)
        if self.hparams.kl_weight > 0 and self.pb is not None:
            loss = loss + self.hparams.kl_weight * backward_kl_to_uniform(traj.log_pb_all, traj.parents)
        return loss

    def balance_loss(self, traj: Trajectories, obj: Tensor) -> Tensor:
        hp = self.hparams
        if hp.loss in ("tb", "op_tb"):
            log_pf, log_pb = traj.log_pf.sum(0), traj.log_pb.sum(0)
            if hp.loss == "tb":
                return trajectory_balance(self.log_Z, log_pf, log_pb, hp.beta * obj[:, 0].log())
            return self.order_loss(tb_log_reward(log_pf, log_pb), obj)
        # detailed balance: every move s → s', then the stop transition x → s_f
        log_F = self.log_flow(self.env.encode(traj.states.flatten(0, 1))).float().view(traj.states.shape[:2])
        move = traj.moved
        stop_t = traj.stopped.float().argmax(0)  # the step at which each trajectory stopped
        b = torch.arange(stop_t.shape[0], device=stop_t.device)
        log_F_x, log_pf_stop = log_F[stop_t, b], traj.log_pf[stop_t, b]
        if hp.loss == "db":
            log_R = hp.beta * obj[:, 0].log()
            return detailed_balance(torch.cat([log_F[:-1][move], log_F_x]),
                                    torch.cat([traj.log_pf[move], log_pf_stop]),
                                    torch.cat([log_F[1:][move], log_R]),
                                    torch.cat([traj.log_pb[move], torch.zeros_like(log_R)]))
        # OP-DB: the stop transition balances by definition against the learned reward
        # log R̂(x) = log F(x) + log P_F(s_f | x); it enters the mean with residual 0, as in the official code
        log_r_hat = db_log_reward(log_F_x, log_pf_stop)
        internal = detailed_balance(torch.cat([log_F[:-1][move], log_F_x]),
                                    torch.cat([traj.log_pf[move], log_pf_stop]),
                                    torch.cat([log_F[1:][move], log_r_hat]),
                                    torch.cat([traj.log_pb[move], torch.zeros_like(log_r_hat)]))
        return internal + hp.order_weight * self.order_loss(log_r_hat, obj)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        traj = self.sample_trajectories(self.hparams.batch_size, self.hparams.epsilon)
        obj = self.checked_objectives(traj.terminal)
        loss = self.loss_of(traj, obj)
        self.n_trajectories += traj.terminal.shape[0]
        if self.visited.visited.numel():  # every rank records every rank's samples, so their states agree
            index = self.env.index(traj.terminal)
            self.visited.update(self.all_gather(index).flatten() if self.trainer.world_size > 1 else index)
            en = self.enumeration
            if "mode" in en and self.all_modes_at < 0 and self.modes_found(self.visited.visited > 0) == en["n_modes"]:
                self.all_modes_at.fill_(int(self.n_trajectories))
        if self.logging_step():
            log = {"train/loss": loss, "train/mean_objective": obj.mean(), "train/trajectories": self.n_trajectories.float()}
            if self.log_Z is not None:
                log["train/log_Z"] = self.log_Z.detach()
            self.log_dict(log, batch_size=traj.terminal.shape[0])
            self.log("loss", loss, prog_bar=True, logger=False, batch_size=traj.terminal.shape[0])
        return loss

    # -- exact evaluation --------------------------------------------------------------------

    @property
    def enumeration(self) -> dict[str, Tensor]:
        """All states, their features, masks, children and objectives; the modes or the Pareto front."""
        cache = self.__dict__.setdefault("_enumeration", {})
        if self.device not in cache:
            cache.clear()
            cache[self.device] = self._enumerate(self.device)
        return cache[self.device]

    def _enumerate(self, dev: torch.device) -> dict[str, Tensor]:
        e = self.env
        states = e.all_states().to(dev)
        mask = e.forward_mask(states)
        children = torch.zeros(states.shape[0], e.n_actions - 1, dtype=torch.long, device=dev)
        for a in range(e.n_actions - 1):
            ok = mask[:, a]
            acts = torch.full((int(ok.sum()),), a, dtype=torch.long, device=dev)
            children[ok, a] = e.index(e.step(states[ok], acts))
        obj = e.objectives(states).float()
        terminal = mask[:, -1]  # the states where the sampler may stop: the candidates
        out = {"states": states, "obs": e.encode(states), "mask": mask, "children": children, "objectives": obj,
               "terminal": terminal, "start": e.index(e.initial(1).to(dev))}
        candidates = terminal.nonzero().squeeze(1)
        if obj.shape[1] == 1:
            best = obj[candidates, 0] >= obj[candidates, 0].max() - 1e-6
        else:
            best = pareto_mask(obj[candidates])
            out["reference"] = obj[candidates].min(0).values
            out["front_hv"] = hypervolume(obj[candidates][best], out["reference"])
        out["best"] = candidates[best]
        if obj.shape[1] == 1:  # the mode each best state belongs to
            region = e.mode_region(states[out["best"]]) if hasattr(e, "mode_region") else torch.arange(int(best.sum()))
            out["mode"] = torch.unique(region.to(dev), return_inverse=True)[1]
            out["n_modes"] = int(out["mode"].max()) + 1
        return out

    def modes_found(self, visited: Tensor) -> Tensor:
        """Number of modes with at least one visited best state (each Pareto-front state for several objectives)."""
        en = self.enumeration
        hit = visited[en["best"]]
        if "mode" not in en:
            return hit.sum()
        return torch.tensor(torch.unique(en["mode"][hit]).numel(), device=hit.device)

    @torch.no_grad()
    def exact_distribution(self) -> Tensor:
        """P_T(x) of the current sampler over all states (no exploration)."""
        en = self.enumeration
        log_pf = masked_log_softmax(self.pf(en["obs"]), en["mask"])
        return exact_terminal_distribution(log_pf, en["children"], int(en["start"]), self.env.max_length)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        if not self.visited.visited.numel():  # not enumerable: the mean objective of fresh samples
            x = self.sample(self.hparams.batch_size)
            self.log("val/mean_objective", self.env.objectives(x).float().mean(), batch_size=1)
            return
        en, hp = self.enumeration, self.hparams
        p = self.exact_distribution()
        visited = self.visited.compute()
        obj, best, terminal = en["objectives"], en["best"], en["terminal"]
        self.log("val/order_agreement", order_agreement(p[terminal], obj[terminal]), batch_size=1)
        if obj.shape[1] == 1:
            # tb/db target R^β/Z; the OP losses target a learned reward, so their distance to R/Z is named for what it is
            trains_on_r = hp.loss in ("tb", "db")
            target = obj[:, 0].pow(hp.beta if trains_on_r else 1.0) * terminal
            found = obj[visited, 0]
            k = min(hp.top_k, found.numel())
            self.log_dict({
                "val/l1" if trains_on_r else "val/l1_to_reward": l1_distance(p, target / target.sum()),
                "val/modes_found": self.modes_found(visited).float(),
                "val/mode_states_found": visited[best].sum().float(),
                "val/mode_mass": p[best].sum(),
                f"val/top{hp.top_k}_reward": found.topk(k).values.mean() if k else torch.zeros((), device=p.device),
            }, batch_size=1)
        else:
            seen = obj[visited]
            hv = hypervolume(seen.cpu(), en["reference"].cpu()) if seen.numel() else torch.zeros(())
            self.log_dict({
                "val/pareto_found": visited[best].float().mean(),
                "val/pareto_mass": p[best].sum(),
                "val/hypervolume": hv.to(p.device) / en["front_hv"].to(p.device),
            }, batch_size=1)
        self.log("val/trajectories", self.n_trajectories.float(), batch_size=1)

    # -- Lightning plumbing ------------------------------------------------------------------

    def configure_optimizers(self) -> torch.optim.Optimizer:
        nets = [p for n, p in self.named_parameters() if n != "log_Z"]
        groups = [{"params": nets, "lr": self.hparams.lr}]
        if self.log_Z is not None:
            groups.append({"params": [self.log_Z], "lr": self.hparams.lr_Z})
        return torch.optim.Adam(groups)

    def train_dataloader(self) -> Steps:
        """No data set: each training step samples its own trajectories."""
        return Steps(self.hparams.steps_per_epoch)

    def val_dataloader(self) -> Steps:
        return Steps(1)
