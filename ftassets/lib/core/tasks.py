"""How each task is scored, as the eval contract declares it: the vocabulary of metric kinds.

A task names one or more metrics; each metric says whether one reply passes (against the reference
reply of a test item), and the task's `success` rule (`all` or `any` of them) is the bit the release
rule counts. The kinds are declared here (their settings, checked when the contract loads, with the
file and task in the error); `lib/core/scoring.py` implements each.

    tasks:
      invoice_extraction:
        metrics:
          - {kind: json_schema, schema: governance/schemas/invoice.schema.json, fields: [total, currency]}
      summary:
        success: any
        metrics: [{kind: exact_match}, {kind: rouge_l, min: 0.5}]
        weight: 2
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ftassets.lib.core.errors import GovernanceError


class _Metric(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ExactMatch(_Metric):
    """The reply equals the reference after normalisation."""
    kind: Literal["exact_match"]
    normalize: list[Literal["strip", "lower", "whitespace", "punctuation"]] = ["strip", "lower"]


class ContainsAll(_Metric):
    """Every listed string occurs in the reply (case-insensitive unless `case_sensitive`)."""
    kind: Literal["contains_all"]
    values: list[str] = Field(min_length=1)
    case_sensitive: bool = False


class ContainsAny(_Metric):
    """At least one listed string occurs in the reply."""
    kind: Literal["contains_any"]
    values: list[str] = Field(min_length=1)
    case_sensitive: bool = False


class Regex(_Metric):
    """The reply matches a regular expression (Python `re.search`)."""
    kind: Literal["regex"]
    pattern: str
    ignore_case: bool = False


class JsonSchema(_Metric):
    """The reply holds a JSON object valid under a JSON Schema file (relative to the data dir); with
    `fields`, each listed field must also equal the reference's (per-field accuracy and macro-F1 are
    reported)."""
    kind: Literal["json_schema"]
    schema_file: str = Field(alias="schema")
    fields: list[str] = []
    schema_content: dict = {}  # filled in by the loader: the file's JSON

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Classification(_Metric):
    """The reply (normalised) is one of `labels` and equals the reference's label; accuracy, macro-F1
    and the confusion matrix are reported."""
    kind: Literal["classification"]
    labels: list[str] = Field(min_length=2)
    normalize: list[Literal["strip", "lower", "whitespace", "punctuation"]] = ["strip", "lower"]


class RougeL(_Metric):
    """ROUGE-L F-measure against the reference (rouge-score, stemmed) at least `min`."""
    kind: Literal["rouge_l"]
    min: float = Field(0.5, ge=0, le=1)


class Bleu(_Metric):
    """Sentence BLEU against the reference (sacrebleu, its 0-100 scale) at least `min`."""
    kind: Literal["bleu"]
    min: float = Field(30.0, ge=0, le=100)


class Chrf(_Metric):
    """Sentence chrF against the reference (sacrebleu, its 0-100 scale) at least `min`."""
    kind: Literal["chrf"]
    min: float = Field(50.0, ge=0, le=100)


class Numeric(_Metric):
    """The first number in the reply is within `tolerance` (absolute) of the reference's first number."""
    kind: Literal["numeric"]
    tolerance: float = Field(0.0, ge=0)


class Refusal(_Metric):
    """The reply refuses (`expected: true`) or does not (`expected: false`), by the refusal phrase matcher."""
    kind: Literal["refusal"]
    expected: bool = True


class Python(_Metric):
    """`function(prediction: str, reference: str) -> bool | float | dict` from an installed module
    (`package.module:function`); a float passes at `min` or above, a dict needs a `passed` key."""
    kind: Literal["python"]
    function: str = Field(pattern=r"^[\w.]+:\w+$")
    min: float = 0.5
    timeout_s: float = Field(5.0, gt=0, le=600)  # per reply: a slower call fails that item, with the reason


class Judge(_Metric):
    """A language model (the contract's `judge`) says whether the reply is acceptable: its probability of
    "yes" must reach `min`. It may feed a release rule only once its agreement with people is measured."""
    kind: Literal["judge"]
    min: float = Field(0.5, gt=0, lt=1)


Metric = Annotated[ExactMatch | ContainsAll | ContainsAny | Regex | JsonSchema | Classification | RougeL | Bleu
                   | Chrf | Numeric | Refusal | Python | Judge, Field(discriminator="kind")]
KINDS = ("exact_match", "contains_all", "contains_any", "regex", "json_schema", "classification", "rouge_l",
         "bleu", "chrf", "numeric", "refusal", "python", "judge")


class TaskSpec(BaseModel):
    """One declared task: its metrics and which of them make a success."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics: list[Metric] = Field(min_length=1)
    success: Literal["all", "any"] = "all"
    weight: float = Field(1.0, gt=0)  # this task's share of the overall task success (see task_success_average)

    def schema_metric(self) -> JsonSchema | None:
        return next((m for m in self.metrics if isinstance(m, JsonSchema)), None)

    def judged(self) -> bool:
        return any(isinstance(m, Judge) for m in self.metrics)


def load_tasks(raw, where: str, data_dir: Path) -> dict[str, TaskSpec]:
    """The contract's `tasks` section, each task checked; schema files are read in and checked as JSON
    Schema, python functions imported. Every error names the file, the task and the metric."""
    import jsonschema

    if not isinstance(raw, dict) or not raw:
        raise GovernanceError(f"{where}: tasks must map each task name to its metrics (at least one task)")
    out = {}
    for name, spec in raw.items():
        try:
            task = TaskSpec.model_validate(spec)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(x) for x in first["loc"])
            raise GovernanceError(f"{where}: tasks.{name}.{field}: {first['msg']}") from None
        metrics = []
        for n, metric in enumerate(task.metrics):
            at = f"{where}: tasks.{name}.metrics[{n}] ({metric.kind})"
            if isinstance(metric, JsonSchema):
                path = Path(metric.schema_file) if Path(metric.schema_file).is_absolute() else data_dir / metric.schema_file
                try:
                    content = json.loads(path.read_text(encoding="utf-8"))
                    jsonschema.validators.validator_for(content).check_schema(content)
                except FileNotFoundError:
                    raise GovernanceError(f"{at}: schema file {path} not found") from None
                except json.JSONDecodeError as exc:
                    raise GovernanceError(f"{at}: schema file {path} is not JSON ({exc})") from None
                except jsonschema.SchemaError as exc:
                    raise GovernanceError(f"{at}: {path} is not a valid JSON Schema ({exc.message})") from None
                missing = [f for f in metric.fields if f not in (content.get("properties") or {})]
                if missing:
                    raise GovernanceError(f"{at}: fields {missing} are not properties of {path}")
                metric = metric.model_copy(update={"schema_content": content})
            elif isinstance(metric, Regex):
                import re

                try:
                    re.compile(metric.pattern)
                except re.error as exc:
                    raise GovernanceError(f"{at}: pattern {metric.pattern!r} is not a regular expression ({exc})")
            elif isinstance(metric, Python):
                resolve_function(metric.function, at)
            metrics.append(metric)
        out[str(name)] = task.model_copy(update={"metrics": metrics})
    return out


def resolve_function(spec: str, where: str):
    """`package.module:function` -> the callable; a missing module or name is a located error."""
    module_name, _, attr = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise GovernanceError(f"{where}: cannot load {spec} ({type(exc).__name__}: {exc})") from None
    if not callable(function):
        raise GovernanceError(f"{where}: {spec} is not callable")
    return function
