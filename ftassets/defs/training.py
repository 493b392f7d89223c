"""Training: the LoRA SFT adapter, the DPO adapter on top of it, and the merged standalone model
(with a parity check that the merge changed nothing).

The two adapters are trained in their own process, launched through Dagster Pipes (the
`training_launcher` resource): logs stream into the run as they happen, the summary comes back as
the reported materialization, and the recipe stays a plain script. Checkpoints live outside the
adapter's staging folder, so a run killed midway resumes from its last checkpoint when the asset
is materialized again with the same settings and inputs."""


import dataclasses
import json

import dagster as dg
from pydantic import Field

from ftassets.defs.platform.metadata import package_versions, upstream_versions
from ftassets.defs.platform.resources import ArtifactStore, TrainingLauncher
from ftassets.lib.core.files import atomic_directory, read_jsonl, sha256_tree
from ftassets.lib.core.models import adapter_model, load_model, load_tokenizer
from ftassets.lib.core.plots import loss_curves_png, markdown_image
from ftassets.lib.training import dpo as train_dpo
from ftassets.lib.training import merge
from ftassets.lib.training import sft as train_sft
from ftassets.lib.training.checks import check_settings

GROUP = "training"
POOL = "heavy_compute"
PRECISION_HELP = ("auto, bf16, fp16 or fp32; auto is bf16 on CUDA (fp16 without bf16) and, on a CPU, bf16 only "
                  "where its matmuls measure faster")
KEEP_FREED_MEMORY_HELP = ("glibc malloc keeps freed tensor memory for the next step instead of re-mapping it "
                          "(measured ~1.6x faster steps on CPU)")


def _launch(context: dg.AssetExecutionContext, launcher: TrainingLauncher, recipe: str, cfg) -> dict:
    """Run a recipe through Pipes; settings are checked here first, so a bad field fails in the run
    before any process starts. Returns the metadata the recipe reported."""
    check_settings(cfg)
    return launcher.launch(context, recipe, dataclasses.asdict(cfg))


def _training_metadata(context: dg.AssetExecutionContext, path, reported: dict, inputs: list[str]) -> dict:
    """The recipe's reported scalars, plus what the summary file holds that is not a scalar: the loss
    curves (numbers and a plot), the config, and the paper trail."""
    summary = json.loads((path / "training_summary.json").read_text())
    curves = {k: summary[k] for k in summary if k.endswith("_curve") or k.startswith("rewards_")}
    plot = markdown_image(loss_curves_png(summary, context.asset_key.to_user_string()), "loss curves")
    return {**reported, "loss_curves": dg.MetadataValue.md(plot), "curves": dg.MetadataValue.json(curves),
            "config": dg.MetadataValue.json(summary["config"]),
            **({"cpu_matmul_gflops": dg.MetadataValue.json(summary["cpu_matmul_gflops"])}
               if "cpu_matmul_gflops" in summary else {}),
            "path": dg.MetadataValue.path(str(path)),
            "package_versions": dg.MetadataValue.json(package_versions()),
            "input_versions": dg.MetadataValue.json(upstream_versions(context, inputs))}


class SftConfig(dg.Config):
    max_length: int = Field(512, description="Longest training sequence in tokens")
    lora_r: int = Field(16, description="LoRA rank")
    lora_alpha: int = Field(32, description="LoRA alpha")
    lora_dropout: float = Field(0.0, description="LoRA dropout (0 by default: on CPU the dropout masks cost ~15% of step time)")
    target_modules: str = Field("all-linear", description="'all-linear' or comma-separated module names")
    lora_top_layers: int = Field(0, description="Adapters on the last N decoder layers only (0: every layer); the "
                                                "backward pass stops below them, so steps get cheaper")
    precision: str = Field("auto", description=PRECISION_HELP)
    keep_freed_memory: bool = Field(True, description=KEEP_FREED_MEMORY_HELP)
    micro_batch_size: int = Field(8, description="Per-device batch size")
    gradient_accumulation_steps: int = Field(1, description="Micro batches per optimizer step")
    learning_rate: float = Field(2e-4, description="Peak learning rate (conservative LoRA range 1e-4..2e-4)")
    lr_scheduler: str = Field("cosine", description="transformers scheduler name")
    warmup_ratio: float = Field(0.03, description="Share of steps spent warming up")
    epochs: float = Field(2.0, description="Epochs over the training split")
    max_steps: int = Field(-1, description="Stop after this many steps (-1: use epochs)")
    seed: int = Field(42, description="Training seed")
    eval_steps: int = Field(20, description="Validate every N steps")
    early_stopping_patience: int = Field(3, description="Evaluations without improvement before stopping")
    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding)")
    packing: bool = Field(False, description="Best-fit packing without padding (needs CUDA and flash-attn)")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward: less memory, ~30% more compute")
    qlora: bool = Field(False, description="Load the base in 4-bit NF4 (bitsandbytes) and train LoRA on top")
    resume: bool = Field(True, description="Continue an interrupted run (same settings and inputs) from its last checkpoint")
    task_weights: dict[str, float] = Field(
        default_factory=dict, description="Mixture weight per task (meta.task) in the train split, default 1: "
                                          "2 doubles a task's share, 0.5 halves it; validation is not re-weighted")


@dg.asset(group_name=GROUP, kinds={"pytorch", "peft"}, deps=["base_model", "data_splits"], pool=POOL,
          description="LoRA adapter trained with trl SFTTrainer on the train split (loss on assistant tokens).")
def sft_adapter(context: dg.AssetExecutionContext, config: SftConfig, store: ArtifactStore,
                training_launcher: TrainingLauncher) -> dg.MaterializeResult:
    splits = store.artifact("data_splits")
    target = store.artifact("sft_adapter")
    with atomic_directory(target) as staging:
        cfg = train_sft.SftRecipeConfig(base_model=str(store.artifact("base_model")),
                                        train_file=str(splits / "train.jsonl"),
                                        validation_file=str(splits / "validation.jsonl"),
                                        output_dir=str(staging), checkpoint_dir=str(store.checkpoints("sft_adapter")),
                                        **{**config.model_dump(), "task_weights": ",".join(
                                            f"{k}={v}" for k, v in sorted(config.task_weights.items()))})
        reported = _launch(context, training_launcher, "sft", cfg)
    return dg.MaterializeResult(metadata=_training_metadata(context, target, reported, ["base_model", "data_splits"]),
                                data_version=dg.DataVersion(sha256_tree(target)[:32]))


@dg.asset_check(asset=sft_adapter, blocking=True,
                description="Training used the base tokenizer's chat template: audited training examples decode back to "
                            "the template's rendering and the loss covers exactly the final assistant turn.")
def chat_template_loss_mask(store: ArtifactStore) -> dg.AssetCheckResult:
    audit = json.loads((store.artifact("sft_adapter") / "training_summary.json").read_text())["template_audit"]
    passed = audit["audited"] > 0 and audit["round_trip_ok"] == audit["mask_exact_ok"] == audit["audited"]
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "value": min(audit["round_trip_ok"], audit["mask_exact_ok"]), "threshold": audit["audited"],
        "round_trip_ok": audit["round_trip_ok"], "mask_exact_ok": audit["mask_exact_ok"],
        "first_failure": dg.MetadataValue.json(audit["first_failure"] or {})})


class DpoConfig(dg.Config):
    beta: float = Field(0.1, description="DPO beta: strength of the pull towards the reference (SFT) policy")
    learning_rate: float = Field(5e-5, description="Peak learning rate")
    epochs: float = Field(1.0, description="Epochs over the preference pairs")
    max_steps: int = Field(-1, description="Stop after this many steps (-1: use epochs)")
    micro_batch_size: int = Field(4, description="Pairs per step")
    lora_r: int = Field(16, description="LoRA rank")
    lora_alpha: int = Field(32, description="LoRA alpha")
    lora_top_layers: int = Field(0, description="Adapters on the last N decoder layers only (0: every layer)")
    precision: str = Field("auto", description=PRECISION_HELP)
    keep_freed_memory: bool = Field(True, description=KEEP_FREED_MEMORY_HELP)
    seed: int = Field(42, description="Training seed")
    eval_steps: int = Field(10, description="Validate (and checkpoint) every N steps")
    early_stopping_patience: int = Field(3, description="Evaluations without improvement before stopping (0: off)")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward: less memory, ~30% more compute")
    system_prompt: str = Field("You are the Nimbus platform support assistant. Be accurate and brief.",
                               description="System turn prepended to preference prompts that have none, as in the SFT data")
    resume: bool = Field(True, description="Continue an interrupted run (same settings and inputs) from its last checkpoint")


@dg.asset(group_name=GROUP, kinds={"pytorch", "peft"}, deps=["base_model", sft_adapter, "preference_pairs"],
          pool=POOL, description="DPO LoRA adapter trained on top of the SFT policy (reference = SFT).")
def dpo_adapter(context: dg.AssetExecutionContext, config: DpoConfig, store: ArtifactStore,
                training_launcher: TrainingLauncher) -> dg.MaterializeResult:
    target = store.artifact("dpo_adapter")
    pairs = store.artifact("preference_pairs")
    with atomic_directory(target) as staging:
        cfg = train_dpo.DpoRecipeConfig(base_model=str(store.artifact("base_model")),
                                        sft_adapter=str(store.artifact("sft_adapter")),
                                        pairs_file=str(pairs / "train.jsonl"), validation_file=str(pairs / "validation.jsonl"),
                                        output_dir=str(staging), checkpoint_dir=str(store.checkpoints("dpo_adapter")),
                                        **config.model_dump())
        reported = _launch(context, training_launcher, "dpo", cfg)
    return dg.MaterializeResult(
        metadata=_training_metadata(context, target, reported, ["base_model", "sft_adapter", "preference_pairs"]),
        data_version=dg.DataVersion(sha256_tree(target)[:32]))


class MergeConfig(dg.Config):
    include_dpo: bool = Field(True, description="Merge the DPO adapter on top of SFT (else SFT only)")


def adapter_stack(store: ArtifactStore, include_dpo: bool) -> list[str]:
    stack = [str(store.artifact("sft_adapter"))]
    return stack + [str(store.artifact("dpo_adapter"))] if include_dpo else stack


@dg.asset(group_name=GROUP, kinds={"pytorch", "safetensors"}, deps=["base_model", sft_adapter, dpo_adapter],
          pool=POOL, description="Standalone safetensors model: base with the adapters merged in.")
def merged_model(context: dg.AssetExecutionContext, config: MergeConfig, store: ArtifactStore) -> dg.MaterializeResult:
    target = store.artifact("merged_model")
    stack = adapter_stack(store, config.include_dpo)
    merge.merge_adapters(str(store.artifact("base_model")), stack, target)
    (target / "adapter_stack.json").write_text(json.dumps({"base_model": str(store.artifact("base_model")),
                                                           "adapters": stack}, indent=2))
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(target)), "adapters": dg.MetadataValue.json(stack),
        "input_versions": dg.MetadataValue.json(upstream_versions(context, ["base_model", "sft_adapter", "dpo_adapter"]))},
        data_version=dg.DataVersion(sha256_tree(target)[:32]))


@dg.asset_check(asset=merged_model, blocking=True, additional_deps=["frozen_test_set", "eval_contract"],
                description="Adapter-on-base and the merged model agree: max logit diff under tolerance, same greedy text.")
def adapter_merged_parity(store: ArtifactStore) -> dg.AssetCheckResult:
    contract = json.loads((store.artifact("eval_contract") / "contract.json").read_text())
    tolerance = float(contract.get("parity", {}).get("max_logit_diff", 1e-3))
    n = int(contract.get("parity", {}).get("prompts", 8))
    stack = json.loads((store.artifact("merged_model") / "adapter_stack.json").read_text())
    prompts = [r["messages"][:-1] for r in read_jsonl(store.artifact("frozen_test_set") / "test.jsonl")[:n]]
    tokenizer = load_tokenizer(store.artifact("merged_model"))
    reference = adapter_model(stack["base_model"], stack["adapters"])
    result = merge.parity(reference, load_model(store.artifact("merged_model")), tokenizer, prompts)
    passed = result["max_logit_diff"] <= tolerance and result["greedy_mismatches"] == 0
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "value": result["max_logit_diff"], "threshold": tolerance,
        "greedy_mismatches": result["greedy_mismatches"], "prompts": result["prompts"]})
