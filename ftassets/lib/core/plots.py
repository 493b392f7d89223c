"""Training curves as a PNG that the Dagster UI shows inline (Markdown metadata with a data URI)."""

from __future__ import annotations

import base64
import io


MIN_POINTS = 3  # a curve of fewer points says nothing a number does not
SMOOTHING = 0.6  # TensorBoard's default exponential smoothing weight


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average, debiased at the start (as TensorBoard draws its smoothed line)."""
    out, last = [], 0.0
    for n, value in enumerate(values, start=1):
        last = last * weight + (1 - weight) * value
        out.append(last / (1 - weight ** n))
    return out


def loss_curves_png(summary: dict, title: str) -> bytes | None:
    """Train loss (raw, faint, and smoothed) and validation loss points against step; rates (DPO reward
    accuracy, validation task success, gold pass rate) on a second axis. Curves of fewer than three points
    are left out; None when nothing is left to draw."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    def curve(key: str) -> list:
        points = summary.get(key) or []
        return points if len(points) >= MIN_POINTS else []

    train, validation = curve("train_loss_curve"), curve("validation_loss_curve")
    rates = [(key, label, style) for key, label, style in (
        ("rewards_accuracies", "reward accuracy", "s--"), ("task_success_curve", "validation task success", "^-"),
        ("gold_pass_rate_curve", "gold pass rate", "v:")) if curve(key)]
    if not (train or validation or rates):
        return None
    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.add_subplot()
    if train:
        steps, values = [s for s, _ in train], [v for _, v in train]
        ax.plot(steps, values, "-", color="tab:blue", alpha=0.25, linewidth=1)
        ax.plot(steps, smooth(values), "-", color="tab:blue", label=f"train loss (smoothed {SMOOTHING})")
    if validation:
        ax.plot([s for s, _ in validation], [v for _, v in validation], "o", color="tab:orange",
                label="validation loss")
    if summary.get("best_step") is not None:
        ax.axvline(summary["best_step"], color="grey", linestyle=":", label=f"best step {summary['best_step']}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
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
