"""TOFU's evaluation (Maini et al. 2024), as its official code computes it.

Every probability is length-normalised: p̄(a|q) = exp(mean over a's tokens of log π(a_t | q, a_<t)).

    Probability   forget, retain:               mean_i p̄(a_i|q_i)
                  real authors, world facts:    mean_i p̄(a_i|q_i) / (p̄(a_i|q_i) + Σ_j p̄(ã_ij|q_i))
    ROUGE-L       recall of the greedy answer against a_i (rouge_score's, with the Porter stemmer)
    R_truth       R_i = p̄(â_i|q_i) / exp(mean_j log p̄(ã_ij|q_i))   â: the paraphrased answer (the
                  answer itself on real authors and world facts), ã_ij: the perturbed (wrong) answers
    Truth ratio   forget: mean_i min(R_i, 1/R_i);   the others: mean_i max(0, 1 − 1/R_i)
    Forget quality   the p-value of the two-sample Kolmogorov–Smirnov test between the R_i of the
                  unlearned model and those of the retain model (never trained on the forget set),
                  both on the forget set
    Model utility    the harmonic mean of the nine values {probability, ROUGE-L, truth ratio} ×
                  {retain, real authors, world facts}
    Retain utility   (the zoo's) the harmonic mean of the retain set's three values alone: a model
                  that knows no real authors or world facts (ROUGE-L 0 there) has model utility 0
                  whatever it keeps, so this is the part that can move
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

UTILITY_SETS = ("retain", "real_authors", "world_facts")


def truth_ratio(para_avg_logp: Tensor, pert_avg_logp: Tensor) -> Tensor:
    """R_i = exp(log p̄(â_i) − mean_j log p̄(ã_ij)): [N] from [N] and [N, J] per-token mean log-probs."""
    return torch.exp(para_avg_logp - pert_avg_logp.mean(-1))


def truth_ratio_score(ratios: Tensor, forget: bool) -> float:
    """The truth-ratio statistic TOFU reports: mean min(R, 1/R) on the forget set, mean max(0, 1 − 1/R) elsewhere."""
    if forget:
        return float(torch.minimum(ratios, 1 / ratios).mean())
    return float((1 - 1 / ratios).clamp_min(0).mean())


def probability(gt_avg_logp: Tensor, pert_avg_logp: Tensor | None = None) -> float:
    """Mean length-normalised answer probability; normalised against the perturbed answers where given."""
    p = gt_avg_logp.exp()
    if pert_avg_logp is None:
        return float(p.mean())
    return float((p / (p + pert_avg_logp.exp().sum(-1))).mean())


def forget_quality(unlearned_ratios: Sequence[float] | Tensor, retain_ratios: Sequence[float] | Tensor) -> float:
    """The KS-test p-value between the truth-ratio samples of the unlearned and the retain model."""
    from scipy.stats import ks_2samp

    a = torch.as_tensor(unlearned_ratios, dtype=torch.float64).numpy()
    b = torch.as_tensor(retain_ratios, dtype=torch.float64).numpy()
    return float(ks_2samp(a, b).pvalue)


def model_utility(values: Sequence[float]) -> float:
    """The harmonic mean of the nine utility values (0 if any is 0, as scipy's hmean gives)."""
    from scipy.stats import hmean

    values = [float(v) for v in values]
    return 0.0 if min(values) <= 0 else float(hmean(values))


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> Tensor:
    """ROUGE-L recall of each prediction against its reference: [N] (torchmetrics, Porter stemmer)."""
    from torchmetrics.functional.text.rouge import rouge_score

    out = [rouge_score(p, r, rouge_keys="rougeL", use_stemmer=True)["rougeL_recall"]
           for p, r in zip(predictions, references)]
    return torch.stack(out).float() if out else torch.zeros(0)


def summarise(stats: dict[str, dict[str, Tensor]], retain_ratios: Tensor | None) -> dict[str, float]:
    """TOFU's numbers from the per-item statistics of each evaluation set.

    ``stats[set]`` holds ``gt`` [N] (answer), ``para`` [N] (paraphrase), ``pert`` [N, J] (perturbed
    answers): per-token mean log-probs; ``rouge`` [N]: ROUGE-L recall of the greedy answers. A set without
    perturbed answers (no ``pert``) has no truth ratio, and what needs one is left out."""
    out: dict[str, float] = {}
    for name, s in stats.items():
        normalised = name in ("real_authors", "world_facts")
        out[f"{name}_prob"] = probability(s["gt"], s["pert"] if normalised else None)
        out[f"{name}_rouge"] = float(s["rouge"].mean())
        if "pert" in s:
            out[f"{name}_truth_ratio"] = truth_ratio_score(truth_ratio(s["para"], s["pert"]), forget=name == "forget")
    if all(f"{n}_truth_ratio" in out for n in UTILITY_SETS):
        out["model_utility"] = model_utility([out[f"{n}_{m}"] for n in UTILITY_SETS
                                              for m in ("prob", "rouge", "truth_ratio")])
    if "retain_truth_ratio" in out:  # the retain set's share of utility: what a model that knows no real facts keeps
        out["retain_utility"] = model_utility([out[f"retain_{m}"] for m in ("prob", "rouge", "truth_ratio")])
    if retain_ratios is not None and "forget_truth_ratio" in out:
        out["forget_quality"] = forget_quality(truth_ratio(stats["forget"]["para"], stats["forget"]["pert"]),
                                               retain_ratios)
    return out
