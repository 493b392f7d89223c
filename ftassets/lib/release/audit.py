"""Lineage audit as a reader sees it: the upstream chain of a release (or any asset) rendered as
Markdown for a governance review. The chain itself is read from the Dagster instance
(`ftassets.defs.platform.lineage`); this module only lays it out, so the same dict is also the `--json` form."""

import json

ORDER = ["base_model_record", "base_model", "eval_contract", "validated_examples", "scrubbed_examples",
         "deduplicated_examples", "frozen_test_set", "gold_set", "redteam_set", "data_splits",
         "preference_pairs", "sft_adapter", "dpo_adapter", "merged_model", "eval_report",
         "blind_review_packet", "human_review", "release_decision", "serving_bundle"]


def ordered(assets: dict) -> list[str]:
    """Assets in the loop's order (governance -> curation -> training -> evaluation -> release); others last."""
    rank = {k: i for i, k in enumerate(ORDER)}
    return sorted(assets, key=lambda k: (rank.get(k, len(ORDER)), k))


def _short(value, n: int = 12) -> str:
    return str(value)[:n] if value else "-"


def _config(config) -> str:
    if not config:
        return "-"
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 160 else text[:157] + "..."


def _checks(checks: list[dict]) -> str:
    if not checks:
        return "-"
    return ", ".join(f"{c['check']} {'pass' if c['passed'] else 'FAIL'}" for c in checks)


def render_markdown(audit: dict) -> str:
    chain = audit["chain"]
    head = audit.get("target") or {}
    lines = [f"# Lineage audit: {head.get('label', '')}".rstrip(), ""]
    if head:
        lines += [f"- {k}: `{v}`" for k, v in head.items() if k != "label" and v is not None] + [""]
    lines += ["## Upstream chain", "",
              "| asset | data version | code version | run | materialized (UTC) | config | checks |",
              "|---|---|---|---|---|---|---|"]
    for key in ordered(chain["assets"]):
        e = chain["assets"][key]
        lines.append(f"| {key} | `{_short(e['data_version'])}` | `{_short(e['code_version'])}` | "
                     f"`{_short(e['run_id'], 8)}` | {e['materialized_at_iso']} | `{_config(e['config'])}` | "
                     f"{_checks(e['checks'])} |")
    for key in ordered(chain["assets"]):
        for old in chain["assets"][key].get("also_read", []):
            lines.append(f"| {key} (also read) | `{_short(old['data_version'])}` | | `{_short(old['run_id'], 8)}` | "
                         f"{old['materialized_at_iso']} | read by {', '.join(old['read_by'])} | |")
    if chain["missing"]:
        lines += ["", "Never materialized: " + ", ".join(chain["missing"])]
    lines += ["", "## Sources", "", "| source | license | kind | reached training | data version | file | sha256 |",
              "|---|---|---|---|---|---|---|"]
    for name, spec in sorted(chain["sources"].items()):
        for i, (path, digest) in enumerate(spec["files"].items() or [("-", None)]):
            lead = (f"| {name} | {spec.get('license')} | {spec.get('kind')} | "
                    f"{'yes' if spec['reached_training'] else 'no (do_not_train)'} | `{_short(spec.get('data_version'))}` "
                    if i == 0 else "| | | | | ")
            lines.append(f"{lead}| {path} | `{digest or '-'}` |")
    failed = [c for e in chain["assets"].values() for c in e["checks"] if c["passed"] is False]
    lines += ["", f"## Checks: {sum(len(e['checks']) for e in chain['assets'].values())} evaluated, "
                  f"{len(failed)} failed", ""]
    lines += [f"- FAILED {c['check']} (value {c['value']}, threshold {c['threshold']})" for c in failed] or ["- none failed"]
    return "\n".join(lines) + "\n"


def render_source_usage(source: str, rows: list[dict]) -> str:
    lines = [f"# Releases that used source `{source}`", ""]
    if not rows:
        return "\n".join(lines + ["None: no release_decision in this instance read it.", ""])
    lines += ["| release | decision | run | materialized (UTC) | source data version | reached training | files |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['release_name']} | {r['decision']} | `{r['run_id'][:8]}` | {r['materialized_at']} | "
                     f"`{_short(r['source_data_version'])}` | {'yes' if r['reached_training'] else 'no'} | "
                     f"{len(r['files'])} |")
    return "\n".join(lines) + "\n"
