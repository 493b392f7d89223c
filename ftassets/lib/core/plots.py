"""Training curves as a PNG that the Dagster UI shows inline (Markdown metadata with a data URI)."""

from __future__ import annotations

import base64
import io


def loss_curves_png(summary: dict, title: str) -> bytes:
    """Train and validation loss against step; rates (DPO reward accuracy, validation task success, gold
    pass rate) on a second axis when present."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.add_subplot()
    for key, label, style in (("train_loss_curve", "train loss", "-"), ("validation_loss_curve", "validation loss", "o-")):
        points = summary.get(key) or []
        if points:
            ax.plot([s for s, _ in points], [v for _, v in points], style, label=label)
    if summary.get("best_step") is not None:
        ax.axvline(summary["best_step"], color="grey", linestyle=":", label=f"best step {summary['best_step']}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    rates = [(key, label, style) for key, label, style in (
        ("rewards_accuracies", "reward accuracy", "s--"), ("task_success_curve", "validation task success", "^-"),
        ("gold_pass_rate_curve", "gold pass rate", "v:")) if summary.get(key)]
    if rates:  # fractions on a second axis: DPO reward accuracy, the declared task metric, the gold stop signal
        ax2 = ax.twinx()
        for key, label, style in rates:
            points = summary[key]
            ax2.plot([s for s, _ in points], [v for _, v in points], style, label=label)
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("rate")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left" if rates else "best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def markdown_image(png: bytes, alt: str) -> str:
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"
