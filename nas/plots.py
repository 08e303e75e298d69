"""Plots of a search, written as PNG (matplotlib, no display needed)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nas.objectives import Objective, pareto_front
from nas.search import evaluated
from nas.strategy import Record


def plot_search(records: Sequence[Record], objectives: Sequence[Objective], path: str | Path,
                title: str = "") -> Path:
    """The first objective vs. evaluations (each point and the best so far); with a second objective, also
    the first vs. the second with the Pareto front."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    done = evaluated(records, objectives)
    first = objectives[0]
    panels = 2 if len(objectives) > 1 else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    ax = axes[0][0]
    values = [r.feasible_metrics[first.metric] for r in done]
    best, running = None, []
    for v in values:
        best = v if best is None or first.signed({first.metric: v}) > first.signed({first.metric: best}) else best
        running.append(best)
    ax.scatter(range(1, len(values) + 1), values, s=14, alpha=0.6, label="evaluated")
    ax.plot(range(1, len(values) + 1), running, color="C3", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("evaluations")
    ax.set_ylabel(first.metric)
    ax.legend(loc="best", framealpha=0.6)
    ax.grid(alpha=0.3)
    if panels == 2:
        second = objectives[1]
        ax = axes[0][1]
        xs = [r.feasible_metrics[second.metric] for r in done]
        ax.scatter(xs, values, s=14, alpha=0.6, label="evaluated")
        signed = [(first.signed(r.feasible_metrics), second.signed(r.feasible_metrics)) for r in done]
        front = sorted(pareto_front(signed), key=lambda i: xs[i])
        ax.plot([xs[i] for i in front], [values[i] for i in front], "o-", color="C3", label="Pareto front")
        ax.set_xlabel(second.metric)
        ax.set_ylabel(first.metric)
        ax.legend(loc="best", framealpha=0.6)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
