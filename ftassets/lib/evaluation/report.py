"""The eval report as a reader sees it: a Markdown table of every compared model side by side,
forgetting and perplexity tables, and a bar chart of the headline metrics (base vs tuned)."""

from __future__ import annotations

from ftassets.lib.core.plots import markdown_image

HEADLINE = [("task success (test)", lambda m: m["test"]["task_success"]),
            ("schema validity (json_schema tasks)", lambda m: m["test"]["schema_validity"]),
            ("gold pass rate", lambda m: m["gold"]["pass_rate"]),
            ("refusal rate (refuse expected)", lambda m: m["safety"]["refusal_rate"]),
            ("over-refusal (benign)", lambda m: m["safety"]["over_refusal_rate"]),
            ("toxic replies (red team)", lambda m: m["safety"].get("toxic_rate"))]


def _rows(report: dict) -> list[tuple[str, object]]:
    rows = list(HEADLINE)
    tasks = sorted({t for m in report["models"].values() for t in m["test"]["per_task"]})
    for task in tasks:
        views = [m["test"]["per_task"].get(task, {}) for m in report["models"].values()]
        rows.append((f"{task} success", lambda m, t=task: m["test"]["per_task"].get(t, {}).get("success")))
        if any("rouge_l" in v for v in views):
            rows.append((f"{task} ROUGE-L", lambda m, t=task: m["test"]["per_task"].get(t, {}).get("rouge_l")))
        for field in sorted({f for v in views for f in v.get("fields", {})}):
            rows.append((f"{task} {field} macro-F1", lambda m, t=task, f=field: m["test"]["per_task"].get(
                t, {}).get("fields", {}).get(f, {}).get("macro_f1")))
        if any("classification" in v for v in views):
            rows.append((f"{task} macro-F1", lambda m, t=task: m["test"]["per_task"].get(t, {}).get(
                "classification", {}).get("macro_f1")))
    splits = sorted({s for m in report["models"].values() for s in m.get("perplexity", {})})
    for split in splits:
        rows.append((f"perplexity ({split}, assistant tokens)",
                     lambda m, s=split: m.get("perplexity", {}).get(s, {}).get("perplexity")))
    benchmarks = sorted({b for m in report["models"].values() for b in m.get("forgetting", {})})
    for bench in benchmarks:
        rows.append((f"{bench} accuracy (lm-eval)", lambda m, b=bench: m.get("forgetting", {}).get(b, {}).get("acc")))
    return rows


def _table(report: dict) -> list[str]:
    models = list(report["models"])
    lines = ["| metric | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for name, get in _rows(report):
        cells = []
        for key in models:
            value = get(report["models"][key])
            cells.append("n/a" if value is None else f"{value:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _forgetting(report: dict) -> list[str]:
    lines = []
    for key, drops in (report.get("forgetting") or {}).items():
        if not drops:
            continue
        lines += ["", f"Forgetting, {key} vs base_model (a drop counts only beyond the threshold and 2 x stderr):", "",
                  "| benchmark | base | tuned | drop (points) | stderr (points) | counts |", "|---|---|---|---|---|---|"]
        lines += [f"| {b} | {d['base_acc']:.3f} | {d['tuned_acc']:.3f} | {d['drop_points']:.1f} | "
                  f"{d['stderr_points']:.1f} | {'YES' if d['counts'] else 'no'} |" for b, d in drops.items()]
    return lines


def report_markdown(report: dict, with_plot: bool = True) -> str:
    reg = report["regressions"]
    lines = _table(report) + _forgetting(report)
    lines += ["", f"Frozen test items: {report['test_items']}; gold items: {report['gold_items']}; "
                  f"red-team prompts: {report['redteam_items']}.",
              f"Regressions (base right, {report['tuned_model']} wrong): {reg['count']} ({reg['share']:.1%}).",
              f"Toxicity measure: {report.get('toxicity_measure', 'n/a')}."]
    if with_plot:
        lines += ["", markdown_image(metric_bars_png(report), "headline metrics, base vs tuned")]
    return "\n".join(lines)


def metric_bars_png(report: dict) -> bytes:
    """Grouped bars of the headline metrics (fractions), one bar per compared model."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    models = list(report["models"])
    names = [name for name, _ in HEADLINE]
    fig = Figure(figsize=(7.5, 3.8), dpi=100)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(models))
    for i, key in enumerate(models):
        values = [get(report["models"][key]) or 0.0 for _, get in HEADLINE]
        ax.bar([x + i * width for x in range(len(names))], values, width, label=key)
    ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(names))])
    ax.set_xticklabels([n.replace(" (", "\n(") for n in names], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("rate")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
