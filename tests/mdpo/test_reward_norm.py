"""The official code's reward scaling (stable-baselines' VecNormalize) and clipped value loss, as options of
on-policy MDPO: the scaling against a NumPy transcription of VecNormalize's updates, the rollout feeding
the scaled rewards to GAE, the value loss against its formula, and an exact resume with the scaling on."""
import numpy as np
import torch

import zoo.mdpo.on_policy as on_policy
from zoo.mdpo import OnPolicyMDPO

from .test_mdpo import fit


def vec_normalize(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> np.ndarray:
    """VecNormalize's reward path step by step: ret = ret·γ + r, RunningMeanStd(epsilon=1e-4).update(ret),
    r / √(var + 1e-8) clipped to ±10, ret[done] = 0."""
    mean, var, count = 0.0, 1.0, 1e-4
    ret = np.zeros(rewards.shape[1])
    out = np.zeros_like(rewards)
    for t, (r, d) in enumerate(zip(rewards, dones)):
        ret = ret * gamma + r
        batch_mean, batch_var, n = ret.mean(), ret.var(), len(ret)
        delta, total = batch_mean - mean, count + n
        mean, var, count = mean + delta * n / total, (var * count + batch_var * n + delta ** 2 * count * n / total) / total, total
        out[t] = np.clip(r / np.sqrt(var + 1e-8), -10, 10)
        ret[d] = 0
    return out


def test_scaled_rewards_follow_vec_normalize():
    model = OnPolicyMDPO(env="CartPole-v1", n_envs=3, n_steps=8, hidden_sizes=[4], normalize_reward=True, gamma=0.9)
    gen = np.random.default_rng(0)
    rewards = gen.normal(1.0, 2.0, size=(40, 3))
    dones = gen.random((40, 3)) < 0.15
    got = model.scale_rewards(torch.tensor(rewards, dtype=torch.float32), torch.tensor(dones))
    np.testing.assert_allclose(got.numpy(), vec_normalize(rewards, dones, 0.9), rtol=1e-5, atol=1e-5)
    # the first step of a single environment: Var[G] ≈ 1e-4·(1 + r²), so r = 1 scales to 70.7, clipped to 10
    single = OnPolicyMDPO(env="CartPole-v1", n_envs=1, n_steps=8, hidden_sizes=[4], normalize_reward=True)
    assert single.scale_rewards(torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.bool)).item() == 10.0


def test_the_rollout_feeds_scaled_rewards_to_gae(monkeypatch):
    seen = {}
    collect, gae = on_policy.collect_rollout, on_policy.gae

    def spy_collect(*args, **kwargs):
        seen["roll"] = roll = collect(*args, **kwargs)
        return roll

    def spy_gae(rewards, *args):
        seen["rewards"] = rewards.clone()
        return gae(rewards, *args)

    monkeypatch.setattr(on_policy, "collect_rollout", spy_collect)
    monkeypatch.setattr(on_policy, "gae", spy_gae)
    model = OnPolicyMDPO(env="CartPole-v1", n_envs=2, n_steps=32, hidden_sizes=[4], normalize_reward=True,
                         normalize_obs=False)  # no all_gather outside a Trainer
    model.rollout()
    roll = seen["roll"]
    ended = (roll["terminated"] | roll["truncated"]).numpy()
    expected = vec_normalize(roll["rewards"].double().numpy(), ended, model.hparams.gamma)
    np.testing.assert_allclose(seen["rewards"].numpy(), expected, rtol=1e-5)
    assert not np.allclose(expected, roll["rewards"].numpy())  # CartPole's rewards of 1 are scaled


def test_clipped_value_loss():
    model = OnPolicyMDPO(env="CartPole-v1", n_envs=1, n_steps=8, hidden_sizes=[4], value_clip=0.2)
    x = torch.randn(6, 4)
    with torch.no_grad():
        v = model.value(x).squeeze(-1)
    old = v + torch.tensor([0.5, -0.5, 0.1, -0.1, 0.0, 1.0])
    target = v + torch.tensor([1.0, 1.0, -1.0, 0.3, -0.2, 2.0])
    batch = {"x": x, "old_values": old, "returns": target}
    clipped = old + (v - old).clamp(-0.2, 0.2)
    want = torch.maximum((v - target) ** 2, (clipped - target) ** 2).mean()
    torch.testing.assert_close(model.value_loss(batch, slice(None)), want)
    model.hparams.value_clip = 0.0
    torch.testing.assert_close(model.value_loss(batch, slice(None)), ((v - target) ** 2).mean())


def test_resume_with_reward_scaling_equals_unbroken_run(tmp_path):
    flags = ["--model.normalize_reward", "true", "--model.value_clip", "0.2"]
    _, unbroken = fit(tmp_path / "a", *flags)
    fit(tmp_path / "b", *flags, "--trainer.max_steps", "2", "--model.schedule_steps", "4")
    ckpt = torch.load(tmp_path / "b" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert float(ckpt["mdpo_reward_norm"]["count"]) > 16  # updated at each of the 2 × 16 steps
    _, resumed = fit(tmp_path / "b", *flags, "--ckpt_path", "last")
    for k, v in unbroken.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=f"{k} differs after resume")
    torch.testing.assert_close(resumed.reward_norm["G"], unbroken.reward_norm["G"], rtol=0, atol=0)
    for k, v in unbroken.reward_norm["stats"].state_dict().items():
        torch.testing.assert_close(resumed.reward_norm["stats"].state_dict()[k], v, rtol=0, atol=0)
