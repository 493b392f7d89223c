"""A Hugging Face style model card (README.md with YAML front matter) rendered from the release
manifest, so the card never says anything the manifest does not."""

from __future__ import annotations

import yaml

from ftassets.lib.release.gate import rules_markdown


def render(manifest: dict, report_markdown: str) -> str:
    base = manifest["base_model"]
    record = base.get("license_record", {})
    sources = manifest["data"]["sources"]
    front = {
        "license": record.get("license", "other"),
        "base_model": record.get("model"),
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["ftassets", "lora", "peft", "trl"] + (["dpo"] if "dpo_adapter" in manifest["training"] else []),
        "datasets": sorted(sources),
        "model-index": [{"name": manifest["release_name"], "results": [
            {"task": {"type": "text-generation"}, "dataset": {"name": "frozen test set", "type": "ftassets-frozen-test"},
             "metrics": [{"type": "task_success", "value": manifest["evaluation"]["tuned"]["task_success"]},
                         {"type": "gold_pass_rate", "value": manifest["evaluation"]["tuned"]["gold_pass_rate"]}]}]}],
    }
    champion = manifest.get("champion") or {}
    compared = (f"Compared with the base model and with the current release `{champion['release_name']}`"
                + (f" (not evaluated: {champion['error']})" if champion.get("error") else "")
                if champion.get("release_name") else "Compared with the base model (nothing released before)")
    stats = manifest.get("statistics") or {}
    warnings = "".join(f"\n- underpowered: {w}" for w in manifest.get("warnings", []))
    failure = manifest["known_failure_modes"]
    data_rows = "\n".join(f"| {name} | {s['license']} | {s['kind']} | {len(s['files'])} |" for name, s in sources.items())
    training = "\n".join(f"- **{key}**: {t['global_steps']} steps, final train loss {t['final_train_loss']}, "
                         f"lr {t['config'].get('learning_rate')}, LoRA r={t['config'].get('lora_r')}, "
                         f"seed {t['config'].get('seed')}" for key, t in manifest["training"].items())
    sweep = manifest.get("settings_sweep")
    training += ("\n- SFT settings: no settings sweep recorded." if not sweep else
                 f"\n- SFT settings sweep ({sweep['trials']} trials, {sweep['metric']} on the validation split only): "
                 f"chose `{sweep['chosen']}`; the released adapter "
                 f"{'uses' if sweep['sft_adapter_uses_choice'] else 'does NOT use'} the chosen settings.")
    return "\n".join([
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# {manifest['release_name']}", "",
        f"Fine-tuned from `{record.get('model')}` (revision `{record.get('revision')}`, weights sha256 "
        f"`{base.get('weights_sha256')}`) by the ftassets loop. Release decision: **{manifest['decision']}** "
        f"under eval contract version {manifest['contract']['version']}.", "",
        "## Intended use", "", f"Use class: {record.get('intended_use', 'not recorded')} (license record of the base "
        "model). Support-desk tasks it was trained and evaluated on: " + ", ".join(manifest["evaluation"]["tasks"]) + ".", "",
        "## Training data", "", "| source | license | kind | files |", "|---|---|---|---|", data_rows, "",
        f"Splits (id-list sha256): {', '.join(f'{k} `{v[:16]}`' for k, v in manifest['data']['split_id_sha256'].items())}.",
        "", "## Training", "", training, "",
        "## Evaluation", "", report_markdown, "",
        "## Release rules", "",
        f"{compared}. Each rule passes only when its {stats.get('confidence', 0.95):.0%} interval says so "
        f"(paired over the same items); the minimum detectable effect is at power {stats.get('power', 0.8):.0%}.", "",
        *rules_markdown(manifest["rules"]), warnings, "",
        "## Known failure modes", "",
        f"- Gold items failed: {len(failure['gold_failed'])} ({', '.join(g['id'] for g in failure['gold_failed'][:10])})",
        f"- Test items the base got right and this model got wrong: {len(failure['base_only_correct'])}",
        f"- Red-team prompts complied with where refusal was expected: {len(failure['redteam_missed_refusals'])}",
        f"- Benign prompts refused: {len(failure['redteam_over_refusals'])}",
        f"- Known risks of the base model: {', '.join(record.get('known_risks', [])) or 'none recorded'}", "",
        "## Limitations", "", f"Toxicity is measured with {manifest['evaluation']['toxicity_measure']}.", "",
        "## Reproduce", "",
        f"Code commit `{manifest['reproduce'].get('git_commit')}`; run config and every upstream asset's data "
        "version, code version and Dagster run id are in `release_manifest.json`. "
        f"Command: `{manifest['reproduce']['command']}`.", "",
    ])
