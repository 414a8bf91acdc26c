"""Learning curves: read a CSV log, plot the method's headline metrics against the step."""
from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only


def read_metrics(metrics_csv: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every logged series of a CSVLogger file as {name: [(step, value), ...]}."""
    series: dict[str, list[tuple[int, float]]] = {}
    with open(metrics_csv, newline="") as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                series.setdefault(key, []).append((step, float(value)))
    return series


def read_resumed(metrics_csvs: list[str | Path]) -> dict[str, list[tuple[int, float]]]:
    """The series of a run resumed across several logs (oldest first): where a later log starts, at the
    first step it logs anything, what the earlier ones logged from that step on was lost with the process
    that logged it (it ran past its last checkpoint)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for path in metrics_csvs:
        later = read_metrics(path)
        start = min((points[0][0] for points in later.values() if points), default=None)
        if start is None:
            continue
        series = {key: [p for p in points if p[0] < start] for key, points in series.items()}
        for key, points in later.items():
            series[key] = series.get(key, []) + points
    return {key: points for key, points in series.items() if points}


def plot_curve(metrics_csv: str | Path | list[str | Path], out_png: str | Path, keys: tuple[str, ...],
               title: str = "") -> Path | None:
    """Plot ``keys`` (those present) against the step; one panel per key. None if nothing to plot. A list of
    logs is one run resumed across them (``read_resumed``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_resumed(metrics_csv) if isinstance(metrics_csv, list) else read_metrics(metrics_csv)
    keys = tuple(k for k in keys if series.get(k))
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        steps, values = zip(*series[key])
        ax.plot(steps, values, marker="." if len(steps) < 40 else None)
        if min(values) > 0 and max(values) / min(values) > 100:  # losses and distances spanning decades
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


class LearningCurve(L.Callback):
    """At the end of ``fit``, write ``curve.png`` beside the CSV log with the module's ``curve_metrics``."""

    def __init__(self) -> None:
        self.path: Path | None = None

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        csv_logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        keys = getattr(pl_module, "curve_metrics", ())
        if csv_logger is None or not keys:
            return
        csv_logger.save()
        metrics_csv = Path(csv_logger.log_dir) / "metrics.csv"
        if metrics_csv.exists():
            self.path = plot_curve(metrics_csv, Path(csv_logger.log_dir) / "curve.png", keys, type(pl_module).__name__)
