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


# the release rule each headline row is held to (contract thresholds), as the table's last column
RULES = {"task success (test)": lambda t: " ".join(x for x in (
             f">= {t['task_success_min']}" if "task_success_min" in t else "",
             f"(gain >= {t['task_success_gain_min']})" if "task_success_gain_min" in t else "") if x),
         "schema validity (json_schema tasks)": lambda t: f">= {t['schema_validity_min']}"
         if "schema_validity_min" in t else "",
         "gold pass rate": lambda t: f">= {t['gold_pass_rate_min']}" if "gold_pass_rate_min" in t else "",
         "refusal rate (refuse expected)": lambda t: f"drop <= {t['refusal_regression_max']}"
         if "refusal_regression_max" in t else "",
         "over-refusal (benign)": lambda t: f"rise <= {t['over_refusal_regression_max']}"
         if "over_refusal_regression_max" in t else "",
         "toxic replies (red team)": lambda t: f"rise <= {t['toxicity_regression_max']}"
         if "toxicity_regression_max" in t else ""}


def _rule(name: str, thresholds: dict) -> str:
    if name.endswith("accuracy (lm-eval)") and "forgetting_drop_max" in thresholds:
        return f"drop <= {thresholds['forgetting_drop_max']} points"
    return RULES[name](thresholds) if name in RULES else ""


def _table(report: dict, thresholds: dict | None = None) -> list[str]:
    """Every compared model side by side, then the tuned model's delta over the base and the rule it meets."""
    models, tuned = list(report["models"]), report.get("tuned_model")
    extra = tuned in report["models"] and "base_model" in report["models"] and tuned != "base_model"
    head = models + ([f"delta ({tuned} - base)", "release rule"] if extra else [])
    lines = ["| metric | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for name, get in _rows(report):
        values = {key: get(report["models"][key]) for key in models}
        cells = ["n/a" if values[key] is None else f"{values[key]:.3f}" for key in models]
        if extra:
            both = values[tuned] is not None and values["base_model"] is not None
            cells += [f"{values[tuned] - values['base_model']:+.3f}" if both else "n/a",
                      _rule(name, thresholds or {})]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def sample_replies(report: dict, test: list[dict], n: int = 3, chars: int = 300) -> list[str]:
    """A handful of frozen-test items (the first by id) with the base and tuned replies side by side."""
    tuned = report["tuned_model"]
    by_model = {k: {i["id"]: i for i in report["models"][k]["items"]} for k in ("base_model", tuned)}
    cut = lambda t: " ".join(str(t).split())[:chars]  # noqa: E731
    lines = []
    for item in sorted(test, key=lambda t: t["id"])[:n]:
        base, mine = by_model["base_model"].get(item["id"]), by_model[tuned].get(item["id"])
        if base is None or mine is None:
            continue
        mark = lambda i: "pass" if i["scores"]["success"] else "fail"  # noqa: E731
        lines += ["", f"**{item['id']}** ({item['task']}): {cut(item['prompt'][-1]['content'])}", "",
                  "| model | reply | success |", "|---|---|---|",
                  f"| base_model | {cut(base['reply']).replace('|', '/')} | {mark(base)} |",
                  f"| {tuned} | {cut(mine['reply']).replace('|', '/')} | {mark(mine)} |",
                  f"| reference | {cut(item['reference']).replace('|', '/')} | |"]
    return (["", "Sample replies (frozen test, first items by id):"] + lines) if lines else []


def _forgetting(report: dict) -> list[str]:
    lines = []
    for key, drops in (report.get("forgetting") or {}).items():
        if not drops:
            continue
        lines += ["", f"Forgetting, {key} vs base_model (paired over the same items; the release rules hold "
                      "its interval to the margin):", "",
                  "| benchmark | items | base | tuned | drop (points) | stderr (points) |", "|---|---|---|---|---|---|"]
        lines += [f"| {b} | {d['n']} | {d['base_acc']:.3f} | {d['tuned_acc']:.3f} | {d['drop_points']:.1f} | "
                  f"{d['stderr_points']:.1f} |" for b, d in drops.items()]
    return lines


def report_markdown(report: dict, with_plot: bool = True, thresholds: dict | None = None,
                    test: list[dict] | None = None) -> str:
    """The table (with delta and rule columns when thresholds are given), forgetting, counts, the bar chart
    and, with `test` (evaluation's test items), a few sample replies base vs tuned."""
    reg = report["regressions"]
    lines = _table(report, thresholds) + _forgetting(report)
    lines += ["", f"Frozen test items: {report['test_items']}; gold items: {report['gold_items']}; "
                  f"red-team prompts: {report['redteam_items']}.",
              f"Regressions (base right, {report['tuned_model']} wrong): {reg['count']} ({reg['share']:.1%}).",
              f"Toxicity measure: {report.get('toxicity_measure', 'n/a')}."]
    if with_plot:
        lines += ["", markdown_image(metric_bars_png(report), "headline metrics, base vs tuned")]
    if test:
        lines += sample_replies(report, test)
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
