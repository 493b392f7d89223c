"""Release: the decision under the eval contract (a blocking gate), the manifest and model card
that form its paper trail, and the serving bundle that only a released model reaches."""


import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from ftassets.defs.platform import lineage as lin
from ftassets.defs.platform.metadata import package_versions
from ftassets.defs.platform.resources import ArtifactStore
from ftassets.lib.core import contract as contract_lib
from ftassets.lib.core.files import (
    atomic_directory,
    read_jsonl,
    sha256_file,
    sha256_json,
    write_json_atomic,
    write_text_atomic,
)
from ftassets.lib.core.models import weights_sha256
from ftassets.lib.evaluation import report as report_lib
from ftassets.lib.release import audit as audit_lib
from ftassets.lib.release import model_card, serving

GROUP = "release"
INPUTS = ["eval_report", "human_review", "eval_contract", "base_model_record"]
ADAPTERS = ("sft_adapter", "dpo_adapter")  # applied in this order: DPO was trained on the SFT-merged base


def _git_commit() -> dict:
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    if commit.returncode:
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip())}


def _definitions():
    """The project's Definitions (imported late: this module is part of them)."""
    from ftassets.definitions import defs

    return defs


def _ids_digest(path: Path) -> str:
    return sha256_json(sorted(r["id"] for r in read_jsonl(path)))


def _data_section(chain: dict, store: ArtifactStore) -> dict:
    splits = store.artifact("data_splits")
    return {"sources": chain["sources"], "split_id_sha256": {
        "train": _ids_digest(splits / "train.jsonl"), "validation": _ids_digest(splits / "validation.jsonl"),
        "test": _ids_digest(store.artifact("frozen_test_set") / "test.jsonl"),
        "gold": _ids_digest(store.artifact("gold_set") / "gold.jsonl")},
        "preference_pairs_sha256": sha256_file(store.artifact("preference_pairs") / "train.jsonl")
        if (store.artifact("preference_pairs") / "train.jsonl").is_file() else None}


def _training_section(store: ArtifactStore) -> dict:
    out = {}
    for key in ADAPTERS:
        summary = json.loads((store.artifact(key) / "training_summary.json").read_text())
        out[key] = {k: summary.get(k) for k in ("global_steps", "stop_reason", "final_train_loss", "best_step",
                                                 "tokens_seen", "wall_time_s", "precision", "config")}
        out[key]["adapter_config"] = json.loads((store.artifact(key) / "adapter_config.json").read_text())
        out[key]["adapter_sha256"] = sha256_file(store.artifact(key) / "adapter_model.safetensors")
    return out


def _failure_modes(report: dict, tuned_key: str) -> dict:
    tuned = report["models"][tuned_key]
    return {"gold_failed": [{"id": g["id"], "failed_rules": g["failed_rules"]} for g in tuned["gold_items"]
                            if not g["passed"]],
            "base_only_correct": report["regressions"]["base_only_correct"],
            "redteam_missed_refusals": [r["id"] for r in tuned["redteam_items"] if r["expect"] == "refuse" and not r["refused"]],
            "redteam_over_refusals": [r["id"] for r in tuned["redteam_items"] if r["expect"] == "comply" and r["refused"]],
            "redteam_toxic": [r["id"] for r in tuned["redteam_items"] if r.get("toxicity", 0) >= 0.5]}


def _evaluation_section(report: dict, tuned_key: str) -> dict:
    def headline(m):
        return {"task_success": m["test"]["task_success"], "schema_validity": m["test"]["schema_validity"],
                "gold_pass_rate": m["gold"]["pass_rate"], "safety": m["safety"],
                "perplexity": {k: v["perplexity"] for k, v in m.get("perplexity", {}).items()},
                "forgetting": {k: v["acc"] for k, v in m.get("forgetting", {}).items()}}
    return {"models": {k: headline(m) for k, m in report["models"].items()}, "tuned": headline(report["models"][tuned_key]),
            "forgetting_drops": report.get("forgetting", {}), "regressions": {k: v for k, v in report["regressions"].items()},
            "tasks": sorted(report["models"][tuned_key]["test"]["per_task"]),
            "toxicity_measure": report.get("toxicity_measure"),
            "redteam_outcomes": [{k: r[k] for k in ("id", "expect", "refused", "toxicity") if k in r}
                                 for r in report["models"][tuned_key]["redteam_items"]]}


@dg.asset(group_name=GROUP, kinds={"json", "markdown"}, deps=INPUTS,
          description="release or reject, every contract rule with value and threshold; the release manifest "
                      "(everything needed to reproduce the run), the model card generated from it, and the lineage "
                      "audit: the exact upstream chain read back from Dagster's records.")
def release_decision(context: dg.AssetExecutionContext, store: ArtifactStore) -> dg.MaterializeResult:
    contract = json.loads((store.artifact("eval_contract") / "contract.json").read_text())
    report = json.loads((store.artifact("eval_report") / "eval_report.json").read_text())
    review = json.loads((store.artifact("human_review") / "review.json").read_text())
    gate = contract_lib.evaluate_gate(contract, report, review)
    tuned = contract["tuned_model"]
    instance = context.instance
    audit = lin.audit_report(instance, {k: None for k in INPUTS}, _definitions(), label="release_decision inputs")
    chain = audit["chain"]
    trail = lin.trail(chain)
    base_meta = chain["assets"]["base_model"]["metadata"]
    sft_run = (trail.get("sft_adapter") or {}).get("run_id")
    manifest = {
        "release_name": f"ftassets-{tuned}-{(trail.get('eval_report') or {}).get('data_version', 'unversioned')[:12]}",
        "decision": gate["decision"], "reasons": gate["reasons"], "rules": gate["rules"], "tuned_model": tuned,
        "contract": contract, "contract_version": contract["version"],
        "base_model": {"weights_sha256": weights_sha256(store.artifact("base_model")),
                       "parameters": base_meta.get("parameters"),
                       "chat_template_sha256": base_meta.get("chat_template_sha256"),
                       "license_record": json.loads((store.artifact("base_model_record") / "record.json").read_text())["record"]},
        "data": _data_section(chain, store), "training": _training_section(store),
        "evaluation": _evaluation_section(report, tuned), "human_review": review,
        "known_failure_modes": _failure_modes(report, tuned),
        "checks": lin.chain_checks(chain), "lineage": trail, "run_id": context.run_id,
        "reproduce": {"command": "make run  (or: ftassets run --config <run config below>)",
                      "run_config": lin.run_config(instance, sft_run), "python": sys.version.split()[0],
                      "package_versions": package_versions(), **_git_commit()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = store.artifact("release_decision")
    write_json_atomic(out / "release_manifest.json", manifest)
    write_text_atomic(out / "README.md", model_card.render(manifest, report_lib.report_markdown(report, with_plot=False)))
    audit["target"].update({"release_name": manifest["release_name"], "decision": manifest["decision"],
                            "run_id": context.run_id})
    write_json_atomic(out / "lineage_audit.json", audit)
    write_text_atomic(out / "lineage_audit.md", audit_lib.render_markdown(audit))
    table = "\n".join(["| rule | value | threshold | passed |", "|---|---|---|---|"] +
                      [f"| {r['rule']} | {r['value']} | {r['threshold']} | {'yes' if r['passed'] else 'NO'} |"
                       for r in gate["rules"]])
    failed_checks = [c for c in manifest["checks"] if c["passed"] is False]
    return dg.MaterializeResult(metadata={
        "decision": gate["decision"], "release_name": manifest["release_name"],
        "reasons": dg.MetadataValue.json(gate["reasons"]),
        "rules": dg.MetadataValue.md(table), "human_review": review["status"],
        "upstream_checks_failed": len(failed_checks),
        "manifest_path": dg.MetadataValue.path(str(out / "release_manifest.json")),
        "model_card_path": dg.MetadataValue.path(str(out / "README.md")),
        "lineage_audit_path": dg.MetadataValue.path(str(out / "lineage_audit.md")),
        "sources": dg.MetadataValue.json({k: v["data_version"] for k, v in chain["sources"].items()})},
        data_version=dg.DataVersion(sha256_json({k: v for k, v in manifest.items()
                                                 if k not in ("created_at", "run_id", "lineage", "checks")})[:32]))


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


@dg.asset(group_name=GROUP, kinds={"pytorch", "safetensors"},
          deps=[release_decision, "merged_model", "sft_adapter", "dpo_adapter", "eval_contract", "base_model"],
          description="What a server needs: merged model (with tokenizer and chat template), the adapter stack, "
                      "decoding policy, release manifest, model card, eval report and a loopback serving config.")
def serving_bundle(config: ServingConfig, store: ArtifactStore) -> dg.MaterializeResult:
    manifest = json.loads((store.artifact("release_decision") / "release_manifest.json").read_text())
    if manifest["decision"] != "release":  # the gate blocks in-run; this holds when run on its own
        raise dg.Failure(description=f"release_decision is {manifest['decision']}: {manifest['reasons']}")
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        raise dg.Failure(description=f"serving host must be loopback, got {config.host}")
    contract = json.loads((store.artifact("eval_contract") / "contract.json").read_text())
    target = store.artifact("serving_bundle")
    with atomic_directory(target) as staging:
        shutil.copytree(store.artifact("merged_model"), staging / "model")
        for key in ADAPTERS:
            shutil.copytree(store.artifact(key), staging / "adapters" / key,
                            ignore=shutil.ignore_patterns("training_summary.json"))
        write_json_atomic(staging / "adapters.json", {
            "stack": [f"adapters/{k}" for k in ADAPTERS], "merge_all_but_last": True,
            "base_model": {"weights_sha256": manifest["base_model"]["weights_sha256"],
                           "model": manifest["base_model"]["license_record"]["model"]}})
        shutil.copy2(store.data(contract["decoding_policy"]), staging / "decoding_policy.yaml")
        for name in ("release_manifest.json", "README.md"):
            shutil.copy2(store.artifact("release_decision") / name, staging / name)
        for name in ("eval_report.json", "eval_report.md"):
            shutil.copy2(store.artifact("eval_report") / name, staging / name)
        write_json_atomic(staging / "serving.json", {"model_dir": "model", "host": config.host, "port": config.port,
                                                     "trust_remote_code": False, "weights": "safetensors",
                                                     "decoding_policy": "decoding_policy.yaml"})
    files = serving.bundle_files(target)
    write_json_atomic(target / "bundle_files.json", files)
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(target)),
                                          "files": dg.MetadataValue.json(sorted(files)),
                                          "weights_sha256": files["model/model.safetensors"]},
                                data_version=dg.DataVersion(sha256_json(files)[:32]))


@dg.asset_check(asset=serving_bundle, blocking=True, additional_deps=["gold_set", "base_model", "eval_report"],
                description="Loads the bundle as a server would (transformers pipeline for the merged model, peft "
                            "for the adapter stack), answers the gold prompts at the contract's bar, and gives the "
                            "answers the evaluated model gave (>= 90% identical, greedy).")
def bundle_answers_golden_prompts(store: ArtifactStore) -> dg.AssetCheckResult:
    from ftassets.lib.core.models import load_tokenizer
    from ftassets.lib.evaluation.metrics import gold_item_passes

    bundle = store.artifact("serving_bundle")
    manifest = json.loads((bundle / "release_manifest.json").read_text())
    bar = manifest["contract"]["thresholds"].get("gold_pass_rate_min", 0.0)
    evaluated = {g["id"]: g["reply"] for g in json.loads((bundle / "eval_report.json").read_text())[
        "models"][manifest["tuned_model"]]["gold_items"]}
    policy = serving.decoding_policy(bundle)
    gold = read_jsonl(store.artifact("gold_set") / "gold.jsonl")
    items = [{"task": g["task"], "messages": g["messages"]} for g in gold]
    answers = {"merged_pipeline": serving.pipeline_answers(serving.merged_pipeline(bundle), items, policy),
               "peft_adapter": serving.model_answers(serving.adapter_model(bundle, store.artifact("base_model")),
                                                     load_tokenizer(bundle / "model"), items, policy)}
    rates = {way: round(sum(gold_item_passes(g["rules"], a)[0] for g, a in zip(gold, replies)) / len(gold), 4)
             for way, replies in answers.items()}
    same = {way: round(sum(evaluated.get(g["id"]) == a for g, a in zip(gold, replies)) / len(gold), 4)
            for way, replies in answers.items()}
    passed = all(r >= bar for r in rates.values()) and all(v >= 0.9 for v in same.values())
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "value": min(rates.values()), "threshold": bar, "gold_pass_rate": dg.MetadataValue.json(rates),
        "same_as_evaluated": dg.MetadataValue.json(same), "prompts": len(gold)})
