"""Evaluation and release: base vs tuned models side by side, the release decision under the eval
contract (a blocking gate), and the serving bundle that only a released model reaches."""


import json
import shutil
import time

import dagster as dg
from pydantic import Field

from ftassets.defs.common import package_versions, upstream_versions
from ftassets.defs.resources import ArtifactStore
from ftassets.lib import contract as contract_lib
from ftassets.lib import evaluation as ev
from ftassets.lib import merge
from ftassets.lib.files import atomic_directory, read_jsonl, sha256_file, sha256_json, write_json_atomic, write_text_atomic
from ftassets.lib.models import load_model, load_tokenizer

GROUP = "evaluation"
EVAL_INPUTS = ["base_model", "sft_adapter", "dpo_adapter", "merged_model", "frozen_test_set", "gold_set",
               "redteam_set", "eval_contract"]


def _load_compared(store: ArtifactStore, key: str):
    base = str(store.artifact("base_model"))
    if key == "base_model":
        return load_model(store.artifact("base_model"))
    if key == "merged_model":
        return load_model(store.artifact("merged_model"))
    if key == "sft_adapter":
        return merge.adapter_model(base, [str(store.artifact("sft_adapter"))])
    return merge.adapter_model(base, [str(store.artifact("sft_adapter")), str(store.artifact("dpo_adapter"))])


@dg.asset(group_name=GROUP, kinds={"json", "markdown"}, deps=EVAL_INPUTS, pool="heavy_compute",
          description="Every compared model on the frozen test set, gold set and red-team prompts, side by side.")
def eval_report(context: dg.AssetExecutionContext, store: ArtifactStore) -> dg.MaterializeResult:
    contract = json.loads((store.artifact("eval_contract") / "contract.json").read_text())
    test = ev.test_items(read_jsonl(store.artifact("frozen_test_set") / "test.jsonl"))
    gold = read_jsonl(store.artifact("gold_set") / "gold.jsonl")
    redteam = read_jsonl(store.artifact("redteam_set") / "redteam.jsonl")
    tokenizer = load_tokenizer(store.artifact("base_model"))
    results, timings = {}, {}
    for key in contract["models"]:
        started = time.perf_counter()
        results[key] = ev.evaluate_model(_load_compared(store, key), tokenizer, test, gold, redteam, contract)
        timings[key] = round(time.perf_counter() - started, 1)
        context.log.info(f"evaluated {key}: task_success={results[key]['test']['task_success']} in {timings[key]}s")
    tuned = contract["tuned_model"]
    report = {"models": results, "tuned_model": tuned, "test_items": len(test), "gold_items": len(gold),
              "redteam_items": len(redteam), "regressions": ev.regressions(results["base_model"], results[tuned]),
              "eval_seconds": timings, "contract_version": contract["version"],
              "input_versions": upstream_versions(context, EVAL_INPUTS)}
    adapter_key = "dpo_adapter" if "dpo_adapter" in results else "sft_adapter"
    if adapter_key in results and "merged_model" in results:
        report["adapter_merged_task_gap"] = abs(results[adapter_key]["test"]["task_success"]
                                                - results["merged_model"]["test"]["task_success"])
    out = store.artifact("eval_report")
    markdown = ev.report_markdown(report)
    write_json_atomic(out / "eval_report.json", report)
    write_text_atomic(out / "eval_report.md", "# Evaluation report\n\n" + markdown + "\n")
    summary = {k: {"task_success": v["test"]["task_success"], "gold_pass_rate": v["gold"]["pass_rate"],
                   "refusal_rate": v["safety"]["refusal_rate"]} for k, v in results.items()}
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.md(markdown), "summary": dg.MetadataValue.json(summary),
        "base_only_correct": report["regressions"]["count"],
        "json_path": dg.MetadataValue.path(str(out / "eval_report.json")),
        "markdown_path": dg.MetadataValue.path(str(out / "eval_report.md"))},
        data_version=dg.DataVersion(sha256_file(out / "eval_report.json")[:32]))


@dg.asset(group_name=GROUP, kinds={"json"}, deps=[eval_report, "eval_contract", "base_model_record"],
          description="release or reject, every contract rule with value and threshold, and the release manifest.")
def release_decision(context: dg.AssetExecutionContext, store: ArtifactStore) -> dg.MaterializeResult:
    contract = json.loads((store.artifact("eval_contract") / "contract.json").read_text())
    report = json.loads((store.artifact("eval_report") / "eval_report.json").read_text())
    gate = contract_lib.evaluate_gate(contract, report)
    lineage = ["base_model_record", "base_model", "eval_contract", "validated_examples", "scrubbed_examples",
               "deduplicated_examples", "frozen_test_set", "gold_set", "redteam_set", "data_splits",
               "preference_pairs", "sft_adapter", "dpo_adapter", "merged_model", "eval_report"]
    manifest = {"decision": gate["decision"], "reasons": gate["reasons"], "rules": gate["rules"],
                "tuned_model": contract["tuned_model"], "contract": contract,
                "asset_versions": upstream_versions(context, lineage), "run_id": context.run_id,
                "package_versions": package_versions(),
                "training_summaries": {k: json.loads((store.artifact(k) / "training_summary.json").read_text())["config"]
                                       for k in ("sft_adapter", "dpo_adapter")},
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = store.artifact("release_decision")
    write_json_atomic(out / "release_manifest.json", manifest)
    table = "\n".join(["| rule | value | threshold | passed |", "|---|---|---|---|"] +
                      [f"| {r['rule']} | {r['value']} | {r['threshold']} | {'yes' if r['passed'] else 'NO'} |"
                       for r in gate["rules"]])
    return dg.MaterializeResult(metadata={
        "decision": gate["decision"], "reasons": dg.MetadataValue.json(gate["reasons"]),
        "rules": dg.MetadataValue.md(table), "manifest_path": dg.MetadataValue.path(str(out / "release_manifest.json"))},
        data_version=dg.DataVersion(sha256_json({k: v for k, v in manifest.items() if k not in ("created_at", "run_id")})[:32]))


@dg.asset_check(asset=release_decision, blocking=True,
                description="Passes only when every contract rule passes; a reject stops serving_bundle.")
def release_gate(store: ArtifactStore) -> dg.AssetCheckResult:
    manifest = json.loads((store.artifact("release_decision") / "release_manifest.json").read_text())
    failed = [r for r in manifest["rules"] if not r["passed"]]
    return dg.AssetCheckResult(passed=manifest["decision"] == "release" and not failed,
                               severity=dg.AssetCheckSeverity.ERROR, metadata={
                                   "value": len(failed), "threshold": 0, "decision": manifest["decision"],
                                   "rules": dg.MetadataValue.json(manifest["rules"])})


class ServingConfig(dg.Config):
    host: str = Field("127.0.0.1", description="Address the bundled server config binds to (loopback only)")
    port: int = Field(8080, description="Port for the bundled server config")


@dg.asset(group_name=GROUP, kinds={"pytorch", "safetensors"}, deps=[release_decision, "merged_model"],
          description="The released model with its tokenizer, release manifest, eval report and serving config.")
def serving_bundle(config: ServingConfig, store: ArtifactStore) -> dg.MaterializeResult:
    manifest = json.loads((store.artifact("release_decision") / "release_manifest.json").read_text())
    if manifest["decision"] != "release":  # the gate blocks in-run; this holds when run on its own
        raise dg.Failure(description=f"release_decision is {manifest['decision']}: {manifest['reasons']}")
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        raise dg.Failure(description=f"serving host must be loopback, got {config.host}")
    target = store.artifact("serving_bundle")
    with atomic_directory(target) as staging:
        shutil.copytree(store.artifact("merged_model"), staging / "model")
        shutil.copy2(store.artifact("release_decision") / "release_manifest.json", staging)
        for name in ("eval_report.json", "eval_report.md"):
            shutil.copy2(store.artifact("eval_report") / name, staging)
        write_json_atomic(staging / "serving.json", {"model_dir": "model", "host": config.host, "port": config.port,
                                                     "trust_remote_code": False, "weights": "safetensors"})
    files = sorted(p.name for p in target.iterdir())
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(target)),
                                          "files": dg.MetadataValue.json(files),
                                          "weights_sha256": sha256_file(target / "model" / "model.safetensors")})
