"""Release: the decision under the eval contract (a blocking gate), the manifest and model card
that form its paper trail, and the serving bundle that only a released model reaches."""


import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from ftassets.defs.platform import lineage as lin
from ftassets.defs.platform.metadata import package_versions
from ftassets.defs.platform.resources import ArtifactStore, ExperimentTracking
from ftassets.defs.evaluation import champion
from ftassets.defs.sweep import trial_inputs
from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.contract import EvalContract
from ftassets.lib.core.files import atomic_directory, sha256_file, sha256_json, write_json_atomic
from ftassets.lib.core.models import weights_sha256
from ftassets.lib.core.tracking import TrackedRun
from ftassets.lib.curation import dedup
from ftassets.lib.evaluation import report as report_lib
from ftassets.lib.release import audit as audit_lib
from ftassets.lib.release import history, model_card, serving, versions
from ftassets.lib.release.gate import evaluate_gate, rules_markdown
from ftassets.lib.training.checkpoints import input_hashes
from ftassets.lib.training.sweep import adapter_uses_choice

GROUP = "release"
INPUTS = ["eval_report", "human_review", "judge_calibration", "eval_contract", "base_model_record"]
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


def _data_section(chain: dict, store: ArtifactStore) -> dict:
    def ids_digest(asset: str, role: str) -> str:
        return sha256_json(sorted(store.catalog.ids(asset, role)))

    pairs = store.path("preference_pairs", "train")
    return {"sources": chain["sources"], "split_id_sha256": {
        "train": ids_digest("data_splits", "train"), "validation": ids_digest("data_splits", "validation"),
        "test": ids_digest("frozen_test_set", "test"), "gold": ids_digest("gold_set", "gold")},
        "preference_pairs_sha256": sha256_file(pairs) if pairs.is_file() else None}


def _training_section(store: ArtifactStore) -> dict:
    out = {}
    for key in ADAPTERS:
        summary = store.read_json(key, "summary")
        out[key] = {k: summary.get(k) for k in ("global_steps", "stop_reason", "final_train_loss", "best_step",
                                                 "tokens_seen", "wall_time_s", "precision", "config")}
        out[key]["adapter_config"] = store.read_json(key, "adapter_config")
        out[key]["adapter_sha256"] = sha256_file(store.path(key, "adapter_weights"))
    return out


def sweep_section(store: ArtifactStore, sft_config: dict) -> dict | None:
    """The settings sweep (`ftassets sweep`), when one was run: its whole grid and choice, whether the
    shipped SFT adapter was trained with the chosen settings, and on the inputs the sweep saw."""
    if not store.path("sft_sweep", "sweep").is_file():
        return None
    sweep = store.read_json("sft_sweep", "sweep")
    current = input_hashes(trial_inputs(store))  # what the trials read, as they hashed it
    return {**sweep, "sft_adapter_uses_choice": adapter_uses_choice(sweep, sft_config),
            "inputs_unchanged_since_sweep": {k: sweep["inputs"].get(k) == v for k, v in current.items()}}


def current_champion(store: ArtifactStore, instance: dg.DagsterInstance, report: dict, merged_sha256: str) -> dict:
    """The report, its champion marked stale when another model was released after it was evaluated (the
    candidate compared with an older champion is no comparison at all), unless the release since is this
    very candidate (its merged weights are the bundle's)."""
    _, now = champion(store, instance)
    evaluated = report.get("champion") or {}
    if now.get("run_id") == evaluated.get("run_id"):
        return report
    if now.get("weights_sha256") and now["weights_sha256"] == merged_sha256:
        return report
    return {**report, "champion": {**evaluated, "error": f"the released model changed since evaluation (now "
                                                         f"{now.get('release_name')}): re-materialize eval_report"}}


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
def release_decision(context: dg.AssetExecutionContext, store: ArtifactStore,
                     tracking: ExperimentTracking) -> dg.MaterializeResult:
    contract = store.contract()
    merged_sha256 = sha256_file(store.path("merged_model", "weights"))  # what a release ships
    report = current_champion(store, context.instance, store.read_json("eval_report", "report"), merged_sha256)
    review = store.read_json("human_review", "review")
    calibration = (store.read_json("judge_calibration", "calibration")
                   if store.path("judge_calibration", "calibration").is_file() else None)
    gate = evaluate_gate(contract, report, review, calibration)
    tuned = contract.tuned_model
    instance = context.instance
    audit = lin.audit_report(instance, {k: None for k in INPUTS}, label="release_decision inputs")
    chain = audit["chain"]
    trail = lin.trail(chain)
    base_meta = chain["assets"]["base_model"]["metadata"]
    sft_run = (trail.get("sft_adapter") or {}).get("run_id")
    manifest = {
        "release_name": f"ftassets-{tuned}-{(trail.get('eval_report') or {}).get('data_version', 'unversioned')[:12]}",
        "decision": gate["decision"], "reasons": gate["reasons"], "rules": gate["rules"], "tuned_model": tuned,
        "warnings": gate["warnings"], "champion": gate["champion"], "statistics": gate["statistics"],
        "merged_weights_sha256": merged_sha256,
        "contract": contract.model_dump(mode="json"), "contract_version": contract.version,
        "base_model": {"weights_sha256": weights_sha256(store.artifact("base_model")),
                       "parameters": base_meta.get("parameters"),
                       "chat_template_sha256": base_meta.get("chat_template_sha256"),
                       "license_record": store.read_json("base_model_record", "record")["record"]},
        "data": _data_section(chain, store), "training": _training_section(store),
        "settings_sweep": sweep_section(store, store.read_json("sft_adapter", "summary")["config"]),
        "evaluation": _evaluation_section(report, tuned), "human_review": review,
        "judge": {**(calibration or {"status": "judge_calibration not materialized"}), "used_by": sorted(n for n, t in contract.tasks.items() if t.judged())},
        "known_failure_modes": _failure_modes(report, tuned),
        "checks": lin.chain_checks(chain), "lineage": trail, "run_id": context.run_id,
        "reproduce": {"command": "make run  (or: ftassets run --config <run config below>)",
                      "run_config": lin.run_config(instance, sft_run), "python": sys.version.split()[0],
                      "package_versions": package_versions(), **_git_commit()},
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    audit["target"].update({"release_name": manifest["release_name"], "decision": manifest["decision"],
                            "run_id": context.run_id})
    with store.catalog.unit("release_decision") as catalog:  # manifest, card and audit switch together
        manifest_path = catalog.write_json("release_decision", "manifest", manifest)
        card_path = catalog.write_text("release_decision", "model_card",
                                       model_card.render(manifest, report_lib.report_markdown(
                                           report, with_plot=False, thresholds=contract.thresholds)))
        catalog.write_json("release_decision", "audit", audit)
        audit_md = catalog.write_text("release_decision", "audit_markdown", audit_lib.render_markdown(audit))
    splits = {role: store.records("data_splits", role) for role in ("train", "validation")}
    evidence_path = history.write_evidence(store.catalog.release_history(), history.build_evidence(
        manifest, report, splits, store.records("frozen_test_set", "test"), tuned,
        dedup.prompt_text, dedup.minhash))  # what `ftassets diff` compares
    table = "\n".join(rules_markdown(gate["rules"]))
    failed_checks = [c for c in manifest["checks"] if c["passed"] is False]
    tracked = tracking.record(context, store, TrackedRun(
        name=manifest["release_name"], artifacts=[manifest_path, card_path, store.path("eval_report", "markdown")],
        params={"decision": gate["decision"], "tuned_model": tuned, "contract_version": contract.version,
                "thresholds": contract.thresholds},
        figures={f"rule/{r['rule']}": r["value"] for r in gate["rules"] if isinstance(r["value"], (int, float))},
        tags={"ftassets/decision": gate["decision"], "ftassets/release_name": manifest["release_name"]}))
    return dg.MaterializeResult(metadata={**tracked,
        "decision": gate["decision"], "release_name": manifest["release_name"],
        "merged_weights_sha256": manifest["merged_weights_sha256"], "contract_version": contract.version,
        "headline": dg.MetadataValue.json({k: manifest["evaluation"]["tuned"][k]
                                           for k in ("task_success", "schema_validity", "gold_pass_rate")}),
        "reasons": dg.MetadataValue.json(gate["reasons"]),
        "warnings": dg.MetadataValue.json(gate["warnings"]),
        "champion": (gate["champion"] or {}).get("release_name") or "none (compared with base_model)",
        "rules": dg.MetadataValue.md(table), "human_review": review["status"],
        "upstream_checks_failed": len(failed_checks),
        "manifest_path": dg.MetadataValue.path(str(manifest_path)),
        "evidence_path": dg.MetadataValue.path(str(evidence_path)),
        "model_card_path": dg.MetadataValue.path(str(card_path)),
        "lineage_audit_path": dg.MetadataValue.path(str(audit_md)),
        "sources": dg.MetadataValue.json({k: v["data_version"] for k, v in chain["sources"].items()})},
        data_version=dg.DataVersion(sha256_json({k: v for k, v in manifest.items()
                                                 if k not in ("created_at", "run_id", "lineage", "checks")})[:32]))


@dg.asset_check(asset=release_decision, blocking=True,
                description="Passes only when every contract rule passes; a reject stops serving_bundle.")
def release_gate(store: ArtifactStore) -> dg.AssetCheckResult:
    manifest = store.read_json("release_decision", "manifest")
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
    manifest = store.read_json("release_decision", "manifest")
    if manifest["decision"] != "release":  # the gate blocks in-run; this holds when run on its own
        raise dg.Failure(description=f"release_decision is {manifest['decision']}: {manifest['reasons']}")
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        raise dg.Failure(description=f"serving host must be loopback, got {config.host}")
    contract = store.contract()
    target = store.artifact("serving_bundle")
    with atomic_directory(target) as staging:
        def inside(role: str) -> Path:
            return staging / file_name("serving_bundle", role)

        shutil.copytree(store.artifact("merged_model"), inside("model"))
        stack = []
        for key in ADAPTERS:
            shutil.copytree(store.artifact(key), inside("adapters_dir") / key,
                            ignore=shutil.ignore_patterns(file_name(key, "summary")))
            stack.append(f"{file_name('serving_bundle', 'adapters_dir')}/{key}")
        write_json_atomic(inside("adapters"), {
            "stack": stack, "merge_all_but_last": True,
            "base_model": {"weights_sha256": manifest["base_model"]["weights_sha256"],
                           "model": manifest["base_model"]["license_record"]["model"]}})
        shutil.copy2(store.data(contract.decoding_policy), inside("decoding_policy"))
        for role, (asset, source) in {"manifest": ("release_decision", "manifest"),
                                      "model_card": ("release_decision", "model_card"),
                                      "report": ("eval_report", "report"),
                                      "report_markdown": ("eval_report", "markdown")}.items():
            shutil.copy2(store.path(asset, source), inside(role))
        write_json_atomic(inside("serving"), {
            "model_dir": file_name("serving_bundle", "model"), "host": config.host, "port": config.port,
            "trust_remote_code": False, "weights": "safetensors",
            "decoding_policy": file_name("serving_bundle", "decoding_policy")})
    files = serving.bundle_files(target)
    store.catalog.write_json("serving_bundle", "files", files)
    kept = versions.keep(target, store.catalog.releases())  # stays when a later release replaces the bundle
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(target)),
                                          "release_name": manifest["release_name"],
                                          "kept_as": dg.MetadataValue.path(str(kept)),
                                          "files": dg.MetadataValue.json(sorted(files)),
                                          "weights_sha256": files[file_name("serving_bundle", "model_weights")],
                                          "config": dg.MetadataValue.json(config.model_dump())},
                                data_version=dg.DataVersion(sha256_json(files)[:32]))


def released_bundle(store: ArtifactStore) -> tuple[Path, dict, EvalContract]:
    """The newest serving bundle's folder, its manifest, and the contract it was released under."""
    manifest = store.read_json("serving_bundle", "manifest")
    return store.artifact("serving_bundle"), manifest, EvalContract.model_validate(manifest["contract"])


@dg.asset_check(asset=serving_bundle, blocking=True, additional_deps=["gold_set", "base_model", "eval_report"],
                description="Loads the bundle as a server would (transformers pipeline for the merged model, peft "
                            "for the adapter stack), answers the gold prompts at the contract's bar, and gives the "
                            "answers the evaluated model gave (>= 90% identical, greedy).")
def bundle_answers_golden_prompts(store: ArtifactStore) -> dg.AssetCheckResult:
    from ftassets.lib.core.models import load_tokenizer
    from ftassets.lib.core.scoring import gold_item_passes, schema_tasks

    bundle, manifest, contract = released_bundle(store)
    bar, schemas = contract.thresholds.get("gold_pass_rate_min", 0.0), schema_tasks(contract.tasks)
    evaluated = {g["id"]: g["reply"] for g in store.read_json("serving_bundle", "report")[
        "models"][manifest["tuned_model"]]["gold_items"]}
    policy = serving.decoding_policy(bundle)
    gold = store.records("gold_set", "gold")
    items = [{"task": g["task"], "messages": g["messages"]} for g in gold]
    answers = {"merged_pipeline": serving.pipeline_answers(serving.merged_pipeline(bundle), items, policy),
               "peft_adapter": serving.model_answers(serving.adapter_model(bundle, store.artifact("base_model")),
                                                     load_tokenizer(store.path("serving_bundle", "model")), items,
                                                     policy)}
    rates = {way: round(sum(gold_item_passes(g["rules"], a, schemas)[0] for g, a in zip(gold, replies)) / len(gold), 4)
             for way, replies in answers.items()}
    same = {way: round(sum(evaluated.get(g["id"]) == a for g, a in zip(gold, replies)) / len(gold), 4)
            for way, replies in answers.items()}
    passed = all(r >= bar for r in rates.values()) and all(v >= 0.9 for v in same.values())
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "value": min(rates.values()), "threshold": bar, "gold_pass_rate": dg.MetadataValue.json(rates),
        "same_as_evaluated": dg.MetadataValue.json(same), "prompts": len(gold)})
