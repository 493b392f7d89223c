"""Training: the LoRA SFT adapter, the DPO adapter on top of it, and the merged standalone model
(with a parity check that the merge changed nothing).

The two adapters are trained in their own process, launched through Dagster Pipes (the
`training_launcher` resource): logs stream into the run as they happen, the summary comes back as
the reported materialization, and the recipe stays a plain script. Checkpoints live outside the
adapter's staging folder, so a run killed midway resumes from its last checkpoint when the asset
is materialized again with the same settings and inputs."""


import json

import dagster as dg
from pydantic import Field

from ftassets.defs.platform.metadata import package_versions, upstream_versions
from ftassets.defs.platform.resources import ArtifactStore, ExperimentTracking, TrainingLauncher
from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.files import atomic_directory, sha256_tree
from ftassets.lib.core.models import adapter_model, load_model, load_tokenizer
from ftassets.lib.core.plots import loss_curves_png, markdown_image
from ftassets.lib.core.tracking import TrackedRun
from ftassets.lib.training import merge
from ftassets.lib.training.settings import DpoSettings, RecipeIO, SftSettings

GROUP = "training"
POOL = "heavy_compute"


def _tensorboard(context: dg.AssetExecutionContext, store: ArtifactStore):
    """This run's TensorBoard folder, outside the adapter (event files must not enter its content hash)."""
    return store.catalog.tensorboard(context.asset_key.to_user_string(), context.run_id[:8])


def _trained(context: dg.AssetExecutionContext, store: ArtifactStore, tracking: ExperimentTracking, reported: dict,
             inputs: list[str]) -> dg.MaterializeResult:
    """The recipe's reported scalars, plus what the summary file holds that is not a scalar: the loss
    curves (numbers and a plot), the config, and the paper trail; the same run logged to MLflow when
    configured."""
    asset = context.asset_key.to_user_string()
    path, tensorboard = store.artifact(asset), _tensorboard(context, store)
    summary = json.loads((path / file_name(asset, "summary")).read_text())
    curves = {k: summary[k] for k in summary if k.endswith("_curve") or k.startswith("rewards_")}
    png = loss_curves_png(summary, asset)
    plot = markdown_image(png, "loss curves") if png else "(fewer than three logged points: no plot)"
    tracked = TrackedRun(name=f"{asset} {tensorboard.name}", params=summary.get("config", {}), curves={
        k.removesuffix("_curve"): v for k, v in curves.items() if isinstance(v, list)},
        figures={k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        artifacts=[path / file_name(asset, "summary")], tags={"ftassets/tensorboard": str(tensorboard)})
    return dg.MaterializeResult(metadata={
        **reported, "loss_curves": dg.MetadataValue.md(plot), "curves": dg.MetadataValue.json(curves),
        "config": dg.MetadataValue.json(summary["config"]),
        **({"cpu_matmul_gflops": dg.MetadataValue.json(summary["cpu_matmul_gflops"])}
           if "cpu_matmul_gflops" in summary else {}),
        "path": dg.MetadataValue.path(str(path)),
        "package_versions": dg.MetadataValue.json(package_versions()),
        "input_versions": dg.MetadataValue.json(upstream_versions(context, inputs)),
        "tensorboard_logdir": dg.MetadataValue.path(str(tensorboard)),
        **tracking.record(context, store, tracked)},
        data_version=dg.DataVersion(sha256_tree(path)[:32]))


class SftConfig(SftSettings, dg.Config):
    """The SFT recipe's settings (`lib/training/settings.py`), as the launchpad and run configs set them."""


def _selection_io(store: ArtifactStore) -> dict:
    """What the recipe needs to pick checkpoints as the contract's `selection` says: the contract, the
    validation split the task metric is measured on, and the gold set only when it may stop training."""
    contract = store.contract()
    return {"contract_file": str(store.path("eval_contract", "contract")),
            "task_eval_file": str(store.path("data_splits", "validation")),
            "gold_file": str(store.path("gold_set", "gold")) if contract.selection.gold_stop else None}


@dg.asset(group_name=GROUP, kinds={"pytorch", "peft", "trl"}, deps=["base_model", "data_splits", "eval_contract"], pool=POOL,
          description="LoRA adapter trained with trl SFTTrainer on the train split (loss on assistant tokens); the "
                      "checkpoint kept is the best on the contract's selection metric, on the validation split.")
def sft_adapter(context: dg.AssetExecutionContext, config: SftConfig, store: ArtifactStore,
                training_launcher: TrainingLauncher, tracking: ExperimentTracking) -> dg.MaterializeResult:
    target = store.artifact("sft_adapter")
    with atomic_directory(target) as staging:
        io = RecipeIO(base_model=str(store.artifact("base_model")), train_file=str(store.path("data_splits", "train")),
                      validation_file=str(store.path("data_splits", "validation")), output_dir=str(staging),
                      checkpoint_dir=str(store.checkpoints("sft_adapter")),
                      tensorboard_dir=str(_tensorboard(context, store)), **_selection_io(store))
        reported = training_launcher.launch(context, "sft", config, io)
    return _trained(context, store, tracking, reported, ["base_model", "data_splits", "eval_contract"])


@dg.asset_check(asset=sft_adapter, blocking=True,
                description="Training used the base tokenizer's chat template: audited training examples decode back to "
                            "the template's rendering and the loss covers exactly the final assistant turn.")
def chat_template_loss_mask(store: ArtifactStore) -> dg.AssetCheckResult:
    audit = store.read_json("sft_adapter", "summary")["template_audit"]
    passed = audit["audited"] > 0 and audit["round_trip_ok"] == audit["mask_exact_ok"] == audit["audited"]
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "value": min(audit["round_trip_ok"], audit["mask_exact_ok"]), "threshold": audit["audited"],
        "round_trip_ok": audit["round_trip_ok"], "mask_exact_ok": audit["mask_exact_ok"],
        "what_failed": audit.get("explanation", ""),
        "first_failure": dg.MetadataValue.json(audit["first_failure"] or {})})


class DpoConfig(DpoSettings, dg.Config):
    """The DPO recipe's settings (`lib/training/settings.py`), as the launchpad and run configs set them."""


@dg.asset(group_name=GROUP, kinds={"pytorch", "peft", "trl"}, deps=["base_model", sft_adapter, "preference_pairs", "data_splits", "eval_contract"],
          pool=POOL, description="DPO LoRA adapter trained on top of the SFT policy (reference = SFT).")
def dpo_adapter(context: dg.AssetExecutionContext, config: DpoConfig, store: ArtifactStore,
                training_launcher: TrainingLauncher, tracking: ExperimentTracking) -> dg.MaterializeResult:
    target = store.artifact("dpo_adapter")
    with atomic_directory(target) as staging:
        io = RecipeIO(base_model=str(store.artifact("base_model")), sft_adapter=str(store.artifact("sft_adapter")),
                      sft_train_file=str(store.path("data_splits", "train")),
                      train_file=str(store.path("preference_pairs", "train")),
                      validation_file=str(store.path("preference_pairs", "validation")), output_dir=str(staging),
                      checkpoint_dir=str(store.checkpoints("dpo_adapter")),
                      tensorboard_dir=str(_tensorboard(context, store)), **_selection_io(store))
        reported = training_launcher.launch(context, "dpo", config, io)
    return _trained(context, store, tracking, reported,
                    ["base_model", "sft_adapter", "preference_pairs", "data_splits", "eval_contract"])


class MergeConfig(dg.Config):
    include_dpo: bool = Field(True, description="Merge the DPO adapter on top of SFT (else SFT only)")


def adapter_stack(store: ArtifactStore, include_dpo: bool) -> list[str]:
    stack = [str(store.artifact("sft_adapter"))]
    return stack + [str(store.artifact("dpo_adapter"))] if include_dpo else stack


@dg.asset(group_name=GROUP, kinds={"huggingface", "pytorch", "safetensors"}, deps=["base_model", sft_adapter, dpo_adapter],
          pool=POOL, description="Standalone safetensors model: base with the adapters merged in.")
def merged_model(context: dg.AssetExecutionContext, config: MergeConfig, store: ArtifactStore) -> dg.MaterializeResult:
    target = store.artifact("merged_model")
    stack = adapter_stack(store, config.include_dpo)
    merge.merge_adapters(str(store.artifact("base_model")), stack, target, extra={  # weights and stack: one unit
        file_name("merged_model", "stack"): {"base_model": str(store.artifact("base_model")), "adapters": stack}})
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(target)), "adapters": dg.MetadataValue.json(stack),
        "config": dg.MetadataValue.json(config.model_dump()),
        "input_versions": dg.MetadataValue.json(upstream_versions(context, ["base_model", "sft_adapter", "dpo_adapter"]))},
        data_version=dg.DataVersion(sha256_tree(target)[:32]))


@dg.asset_check(asset=merged_model, blocking=True, additional_deps=["frozen_test_set", "eval_contract"],
                description="Adapter-on-base and the merged model agree: max logit diff under tolerance, same greedy text.")
def adapter_merged_parity(store: ArtifactStore) -> dg.AssetCheckResult:
    parity = store.contract().parity
    tolerance = parity.max_logit_diff
    stack = store.read_json("merged_model", "stack")
    prompts = [r["messages"][:-1] for r in store.records("frozen_test_set", "test")[:parity.prompts]]
    tokenizer = load_tokenizer(store.artifact("merged_model"))
    reference = adapter_model(stack["base_model"], stack["adapters"])
    result = merge.parity(reference, load_model(store.artifact("merged_model")), tokenizer, prompts)
    passed = result["max_logit_diff"] <= tolerance and result["greedy_mismatches"] == 0
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "value": result["max_logit_diff"], "threshold": tolerance,
        "greedy_mismatches": result["greedy_mismatches"], "prompts": result["prompts"]})
