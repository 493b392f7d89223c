"""One settings object per training recipe, declared once with its constraints.

`SftSettings` and `DpoSettings` are what a person sets: the Dagster asset config subclasses them
unchanged (the UI launchpad shows these fields, defaults and descriptions), the asset hands
`model_dump()` to the recipe process over Pipes, and the recipe's command line is built from the
same fields. `RecipeIO` is where a run reads and writes, which the asset (or the command line)
decides. A bad value fails when the object is built, naming the field: `lora_r=0: must be an
integer >= 1`. Checks that need the host or the base model are in `checks.py`."""

from __future__ import annotations

import argparse
import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Precision = Literal["auto", "bf16", "fp16", "fp32"]
Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay"]
PRECISION_HELP = ("auto, bf16, fp16 or fp32; auto is bf16 on CUDA (fp16 without bf16) and, on a CPU, bf16 only "
                  "where its matmuls measure faster")
KEEP_FREED_MEMORY_HELP = ("glibc malloc keeps freed tensor memory for the next step instead of re-mapping it "
                          "(faster CPU steps; docs/figures.md)")


class RecipeConfigError(ValueError):
    """A recipe setting that cannot work; the message starts with the field name."""


def fail(field: str, value, why: str):
    raise RecipeConfigError(f"{field}={value!r}: {why}")


def _bounds(info) -> str:
    """A field's numeric constraints in words: 'an integer >= 1', '> 0', 'in [0, 1)'."""
    found = {type(m).__name__: getattr(m, type(m).__name__.lower()) for m in info.metadata
             if type(m).__name__ in ("Ge", "Gt", "Le", "Lt")}
    low = f"[{found['Ge']}" if "Ge" in found else f"({found['Gt']}" if "Gt" in found else None
    high = f"{found['Le']}]" if "Le" in found else f"{found['Lt']})" if "Lt" in found else None
    if low and high:
        return f"in {low}, {high}"
    kind = "an integer " if info.annotation is int else ""
    if low:
        return f"{kind}{'>=' if low[0] == '[' else '>'} {low[1:]}"
    return f"{kind}{'<=' if high[-1] == ']' else '<'} {high[:-1]}"


def _describe(model: type[BaseModel], exc: ValidationError) -> RecipeConfigError:
    """The first error of a settings object, as `field=value: what it must be`."""
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, RecipeConfigError):
        return cause
    field = ".".join(str(x) for x in error["loc"])
    info = model.model_fields.get(str(error["loc"][0])) if error["loc"] else None
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        return RecipeConfigError(f"{field}={value!r}: no such setting")
    if error["type"] == "literal_error" and info is not None:
        options = typing.get_args(info.annotation)
        words = f"one of {', '.join(options)}" if len(options) > 4 else f"{', '.join(options[:-1])} or {options[-1]}"
        return RecipeConfigError(f"{field}={value!r}: must be {words}")
    if error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal") and info is not None:
        return RecipeConfigError(f"{field}={value!r}: must be {_bounds(info)}")
    return RecipeConfigError(f"{field}={value!r}: {error['msg']}")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def __init__(self, **data):
        try:
            super().__init__(**data)
        except ValidationError as exc:  # the first problem, named by its field (also for the Dagster config)
            raise _describe(type(self), exc) from None


class RecipeSettings(_Settings):
    """What both recipes share; defaults are SFT's, DPO overrides its own."""

    max_length: int = Field(1024, ge=1, description="Longest training sequence in tokens; a training example "
                                                    "longer than this is an error before training (never cut "
                                                    "silently): keep it at or above curation's max_tokens (1024)")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, gt=0, description="LoRA alpha")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout (0 by default: on CPU the dropout "
                                                            "masks cost step time)")
    target_modules: str = Field("all-linear", description="'all-linear' or comma-separated module names")
    lora_top_layers: int = Field(0, ge=0, description="Adapters on the last N decoder layers only (0: every layer); "
                                                      "the backward pass stops below them, so steps get cheaper")
    precision: Precision = Field("auto", description=PRECISION_HELP)
    keep_freed_memory: bool = Field(True, description=KEEP_FREED_MEMORY_HELP)
    micro_batch_size: int = Field(8, ge=1, description="Per-device batch size")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro batches per optimizer step")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (conservative LoRA range 1e-4..2e-4)")
    lr_scheduler: Scheduler = Field("cosine", description="transformers scheduler name")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps spent warming up")
    epochs: float = Field(2.0, description="Epochs over the training split (used when max_steps is -1)")
    max_steps: int = Field(-1, description="Stop after this many steps (-1: use epochs)")
    seed: int = Field(42, description="Training seed")
    eval_steps: int = Field(20, ge=1, description="Validate (and checkpoint) every N steps")
    early_stopping_patience: int = Field(3, ge=0, description="Evaluations without improvement before stopping "
                                                              "(0: off)")
    logging_steps: int = Field(5, ge=1, description="Log the training loss every N steps")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward: less memory, "
                                                            "more compute")
    resume: bool = Field(True, description="Continue an interrupted run (same settings and inputs) from its last "
                                           "checkpoint")

    @field_validator("target_modules")
    @classmethod
    def _module_names(cls, value: str) -> str:
        if not value.strip() or any(not t.strip() for t in value.split(",")):
            fail("target_modules", value, "must be 'all-linear' or comma-separated module names")
        return value

    @model_validator(mode="after")
    def _steps_or_epochs(self):
        if self.max_steps == 0 or self.max_steps < -1:
            fail("max_steps", self.max_steps, "must be -1 (use epochs) or >= 1")
        if self.max_steps == -1 and not self.epochs > 0:
            fail("epochs", self.epochs, "must be > 0 when max_steps is -1")
        return self

    def target_module_list(self) -> str | list[str]:
        return "all-linear" if self.target_modules == "all-linear" else [
            t.strip() for t in self.target_modules.split(",")]


class SftSettings(RecipeSettings):
    """LoRA / QLoRA supervised fine-tuning (trl SFTTrainer)."""

    group_by_length: bool = Field(True, description="Batch examples of similar length together (less padding)")
    packing: bool = Field(False, description="Best-fit packing without padding (needs CUDA and flash-attn)")
    qlora: bool = Field(False, description="Load the base in 4-bit NF4 (bitsandbytes) and train LoRA on top")
    task_weights: dict[str, float] = Field(
        default_factory=dict, description="Mixture weight per task (meta.task) in the train split, default 1: "
                                          "2 doubles a task's share, 0.5 halves it; validation is not re-weighted")

    @field_validator("task_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        for task, weight in value.items():
            if not str(task).strip() or weight < 0:
                fail("task_weights", value, f"each task needs a name and a weight >= 0 (got {task!r}: {weight})")
        return value


class DpoSettings(RecipeSettings):
    """DPO on top of the SFT policy (trl DPOTrainer; the reference is the SFT policy)."""

    beta: float = Field(0.1, gt=0, description="DPO beta: strength of the pull towards the reference (SFT) policy")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate")
    epochs: float = Field(1.0, description="Epochs over the preference pairs (used when max_steps is -1)")
    micro_batch_size: int = Field(4, ge=1, description="Pairs per step")
    eval_steps: int = Field(10, ge=1, description="Validate (and checkpoint) every N steps")
    system_prompt: str | None = Field(None, description="System turn prepended to preference prompts that have "
                                                        "none; default: the most common system turn of the SFT "
                                                        "data (RecipeIO.sft_train_file), so DPO sees prompts as "
                                                        "SFT did")
    validation_fraction: float = Field(0.1, ge=0, lt=1, description="Share of pairs held out when no validation "
                                                                    "file is given")


class RecipeIO(_Settings):
    """Where one run reads and writes (chosen by the asset, or given on the command line)."""

    base_model: str = Field(description="Base model folder (safetensors)")
    train_file: str = Field(description="Training split (JSONL): chat records for SFT, preference pairs for DPO")
    output_dir: str = Field(description="Where the adapter and its training summary are written")
    validation_file: str | None = Field(None, description="Validation split (JSONL)")
    sft_adapter: str | None = Field(None, description="DPO only: the SFT adapter the DPO run starts from")
    sft_train_file: str | None = Field(None, description="DPO only: the SFT training split, whose most common "
                                                         "system turn preference prompts without one receive")
    checkpoint_dir: str = Field("", description="Checkpoints (every eval_steps); default <output_dir>/checkpoints")
    tensorboard_dir: str = Field("", description="TensorBoard event files of this run (train and validation scalars); "
                                                 "default <output_dir>/runs, as transformers has it")
    contract_file: str | None = Field(None, description="The eval contract (its JSON artifact): its selection section "
                                                        "picks checkpoints on the declared task metric")
    task_eval_file: str | None = Field(None, description="Chat records the task metric is measured on at each "
                                                         "evaluation (default: the validation file; never the test set)")
    gold_file: str | None = Field(None, description="The gold set, read only when the contract's selection.gold_stop "
                                                    "is on")
    sweep_trial: bool = Field(False, description="A sweep trial (chooses settings): scored on the validation split "
                                                 "only; the contract's selection.gold_stop is not applied and the "
                                                 "gold set is never read")


SETTINGS = {"sft": SftSettings, "dpo": DpoSettings}


def parse_args(settings_class: type[RecipeSettings], description: str, argv=None) -> tuple[RecipeIO, RecipeSettings]:
    """The recipe's command line: one flag per field of `RecipeIO` and of the settings class."""
    parser = argparse.ArgumentParser(description=description)
    for model in (RecipeIO, settings_class):
        for name, info in model.model_fields.items():
            flag, help_text = "--" + name.replace("_", "-"), info.description
            if info.annotation is bool:
                parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            elif info.annotation == dict[str, float]:
                parser.add_argument(flag, type=_weights_flag, default=None, help=help_text + " (task=w,task=w)")
            else:
                parser.add_argument(flag, default=None, required=info.is_required(), help=help_text)
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    io = RecipeIO(**{k: v for k, v in given.items() if k in RecipeIO.model_fields})
    return io, settings_class(**{k: v for k, v in given.items() if k in settings_class.model_fields})


def _weights_flag(text: str) -> dict[str, float]:
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        task, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"task_weights: expected task=weight, got {part!r}")
        weights[task.strip()] = float(value)
    return weights
