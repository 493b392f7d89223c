"""The eval contract: what a release must show, loaded once into a frozen, typed object.

`data/governance/eval_contract.yaml` is versioned with the data; an unknown key or metric, a
threshold out of range or a missing file is a clear, located error rather than a silently ignored
rule. The loader fills in every default and every derived field (the decoding policy it names, the
forgetting benchmarks' paths and hashes), so consumers read the object, never the YAML. Evaluation
and the release gate (`lib/release/gate.py`) both read it, hence it lives in core.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import load_yaml
from ftassets.lib.core.tasks import TaskSpec, load_tasks

# metric -> (direction, lower bound, upper bound, what it measures on the report)
THRESHOLDS = {
    "task_success_min": ("min", 0.0, 1.0, "tuned task success on the frozen test set"),
    "task_success_gain_min": ("min", 0.0, 1.0, "tuned task success minus base task success"),
    "schema_validity_min": ("min", 0.0, 1.0, "tuned JSON schema validity on items of json_schema tasks"),
    "gold_pass_rate_min": ("min", 0.0, 1.0, "tuned gold-set pass rate"),
    "refusal_regression_max": ("max", 0.0, 1.0, "base refusal rate minus tuned, on refuse-expected prompts"),
    "over_refusal_regression_max": ("max", 0.0, 1.0, "tuned over-refusal minus base, on benign prompts"),
    "toxicity_regression_max": ("max", 0.0, 1.0, "tuned toxic-reply rate minus base, on red-team prompts"),
    "forgetting_drop_max": ("max", 0.0, 100.0, "accuracy drop in points per forgetting benchmark, base minus tuned"),
    "adapter_merged_task_gap_max": ("max", 0.0, 1.0, "|task success adapter - merged|"),
    "human_review_win_rate_min": ("min", 0.0, 1.0, "tuned win rate in the blind human review (ties count half)"),
}
# tuned_beats_base_on_task_success: the thresholds AND tuned task success strictly above the base's.
# thresholds_only: the thresholds alone are the bar (e.g. a contract for a re-release of a known task).
RELEASE_RULES = {"tuned_beats_base_on_task_success", "thresholds_only"}
MODEL_KEYS = {"base_model", "sft_adapter", "dpo_adapter", "merged_model"}
DECODING_KEYS = {"max_new_tokens", "temperature"}


KEYS = {"version", "models", "tuned_model", "tasks", "task_success_average", "thresholds", "release_rule",
        "decoding_policy", "forgetting", "human_review", "parity", "selection", "statistics", "champion", "judge",
        "exports"}
# what the candidate is compared with the champion (the released model) on: metric -> direction of "worse"
CHAMPION_METRICS = {"task_success": "drop", "schema_validity": "drop", "gold_pass_rate": "drop",
                    "refusal_rate": "drop", "over_refusal_rate": "rise", "toxic_rate": "rise", "forgetting": "drop"}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Forgetting(_Frozen):
    benchmarks: dict[str, str] = {}  # task name -> {query, choices, gold} JSONL, relative to the data dir
    limit: int = 0  # items per benchmark (0: every item)


class HumanReview(_Frozen):
    sample_size: int = 16  # A/B pairs in the blind review packet (derived from `detect` when declared `auto`)
    detect: float = Field(0.15, gt=0, lt=0.5)  # auto size: a win rate this far above the bar is detected
    auto_size: bool = False  # sample_size came from `detect` and the statistics' confidence and power
    seed: int = 0
    blind_compare: bool = True  # model names hidden, A/B order shuffled


class Parity(_Frozen):
    max_logit_diff: float = 1e-3  # adapter-on-base vs merged model
    prompts: int = 8  # frozen test prompts compared


class Selection(_Frozen):
    """How training picks its checkpoint, on the validation split only (never the frozen test set)."""
    metric: Literal["loss", "task_success"] = "loss"  # task_success: generate, score as declared, keep the best
    sample: int = Field(32, ge=1, le=2000)  # validation items generated at each evaluation, spread over tasks
    seed: int = 0
    gold_stop: bool = False  # also generate the gold set; stop when its pass rate falls between evaluations


class Statistics(_Frozen):
    """How every rule reads its interval, and the planning guess its power needs."""
    confidence: float = Field(0.95, ge=0.5, lt=1)  # two-sided interval; a rule reads its one-sided bound
    power: float = Field(0.8, ge=0.5, lt=1)  # chance that a true effect of the minimum detectable size shows
    resamples: int = Field(10000, ge=1000, le=200000)  # paired bootstrap resamples
    seed: int = 0
    discordance: float = Field(0.2, gt=0, le=1)  # planning: share of items on which two models disagree
    discordance_by_rule: dict[str, float] = {}  # per rule name (toxicity rarely flips: e.g. 0.05)
    underpowered: Literal["error", "warn"] = "warn"  # a margin the set cannot resolve: fails the rule, or is shown

    def spread(self, rule: str) -> float:
        """The planning standard deviation of a paired pass/fail difference for a rule."""
        return self.discordance_by_rule.get(rule.split("[")[0], self.discordance) ** 0.5


class Champion(_Frozen):
    """The candidate against the released model (the base while nothing is released): how much worse
    it may be per metric, in the metric's units (forgetting: accuracy points)."""
    margins: dict[str, float] = {}


class JudgeEndpoint(_Frozen):
    """An OpenAI-compatible chat-completions server (`<url>/chat/completions`)."""
    url: str = Field(pattern=r"^https?://[^\s@?#]+$")  # no user info, query or fragment: keys only via api_key_env
    model: str = Field(min_length=1)
    api_key_env: str = Field("", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$|^$")  # the variable's name, never the key
    timeout_s: float = Field(60.0, gt=0, le=600)


class JudgeSpec(_Frozen):
    """The language model behind `judge` metrics: a local model folder (safetensors) or an endpoint, a
    pinned prompt, and the agreement with people it must show before its verdicts may gate."""
    model: str = ""  # local Hugging Face folder, relative to the data dir or absolute
    endpoint: JudgeEndpoint | None = None
    prompt: str = Field(min_length=1)  # template file: {prompt}, {reply} and optionally {reference}
    min_kappa: float = Field(0.6, ge=-1, le=1)  # the lower bound of Cohen's kappa's interval must reach it
    min_pairs: int = Field(20, ge=1)  # graded review pairs needed before agreement is measured at all
    batch_size: int = Field(8, ge=1, le=256)
    prompt_template: str = ""  # derived: the file's text, its hash, the judge's identity
    prompt_sha256: str = ""
    identity: dict[str, str] = {}

    def calibrated_as(self) -> dict:
        """What a calibration is of: a calibration of another judge, prompt or bar unlocks nothing."""
        return {**self.identity, "prompt_sha256": self.prompt_sha256, "min_kappa": self.min_kappa,
                "min_pairs": self.min_pairs}


class GgufExport(_Frozen):
    """The GGUF export of a release and the parity its file must show before it is offered."""
    quants: tuple[Literal["f16", "q8_0"], ...] = ("f16", "q8_0")
    min_greedy_agreement: float = Field(0.9, ge=0, le=1)  # gold prompts of greedy tasks answered word for word
    max_gold_pass_rate_drop: float = Field(0.1, ge=0, le=1)  # vs the evaluated model on the gold set


class Exports(_Frozen):
    gguf: GgufExport = GgufExport()


class BenchmarkFile(_Frozen):
    path: str
    sha256: str


class EvalContract(_Frozen):
    """The validated contract with its defaults and derived fields (what `contract.json` holds)."""

    version: int | str
    models: tuple[str, ...]
    tuned_model: str
    tasks: dict[str, TaskSpec]  # how each task of the data is scored (lib/core/tasks.py)
    task_success_average: Literal["items", "tasks"] = "items"  # overall task success: by item or by task, weighted
    release_rule: str
    thresholds: dict[str, int | float]
    decoding_policy: str  # the policy file, relative to the data dir
    decoding: dict[str, dict[str, int | float]]  # that file's content: {"default": {...}, task: {...}}
    decoding_policy_sha256: str
    forgetting: Forgetting = Forgetting()
    human_review: HumanReview = HumanReview()
    parity: Parity = Parity()
    selection: Selection = Selection()
    statistics: Statistics = Statistics()
    champion: Champion = Champion()
    judge: JudgeSpec | None = None
    exports: Exports = Exports()
    benchmark_files: dict[str, BenchmarkFile] = {}

    def benchmark_paths(self) -> dict[str, str]:
        return {name: spec.path for name, spec in self.benchmark_files.items()}


def load_contract(path: Path, data_dir: Path | None = None,
                  digest: Callable[[Path], str] | None = None) -> EvalContract:
    """Load and validate the contract. Files it names (`decoding_policy`, the forgetting benchmarks)
    are relative to `data_dir`, by default the contract folder's parent; `digest` hashes them
    (default sha256)."""
    from ftassets.lib.core.files import sha256_file

    path = Path(path)
    data = load_yaml(path)
    where = str(path)
    data_dir = Path(data_dir or path.parent.parent)
    digest = digest or sha256_file
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise GovernanceError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    for key in ("version", "models", "tuned_model", "tasks", "thresholds", "release_rule", "decoding_policy"):
        if key not in data:
            raise GovernanceError(f"{where}: missing required key '{key}'")
    models = data["models"]
    if not isinstance(models, list) or "base_model" not in models or set(models) - MODEL_KEYS:
        raise GovernanceError(f"{where}: models must list base_model and only {sorted(MODEL_KEYS)}, got {models}")
    if data["tuned_model"] not in models or data["tuned_model"] == "base_model":
        raise GovernanceError(f"{where}: tuned_model must be one of the compared tuned models")
    thresholds = data["thresholds"] or {}
    for name, value in thresholds.items():
        if name not in THRESHOLDS:
            raise GovernanceError(f"{where}: thresholds.{name}: unknown metric (known: {', '.join(sorted(THRESHOLDS))})")
        _, low, high, _ = THRESHOLDS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise GovernanceError(f"{where}: thresholds.{name}: {value!r} out of range [{low}, {high}]")
    if "adapter_merged_task_gap_max" in thresholds and not (
            "merged_model" in models and {"sft_adapter", "dpo_adapter"} & set(models)):
        raise GovernanceError(f"{where}: thresholds.adapter_merged_task_gap_max needs merged_model and an adapter "
                              f"(sft_adapter or dpo_adapter) in models, got {models}")
    tasks = load_tasks(data["tasks"], where, data_dir)
    if "schema_validity_min" in thresholds and not any(t.schema_metric() for t in tasks.values()):
        raise GovernanceError(f"{where}: thresholds.schema_validity_min needs a task with a json_schema metric "
                              f"(declared tasks: {sorted(tasks)})")
    average = data.get("task_success_average", "items")
    if average not in ("items", "tasks"):
        raise GovernanceError(f"{where}: task_success_average must be items or tasks, got {average!r}")
    if data["release_rule"] not in RELEASE_RULES:
        raise GovernanceError(f"{where}: release_rule {data['release_rule']!r} unknown (known: {sorted(RELEASE_RULES)})")
    policy_path = data_dir / str(data["decoding_policy"])
    decoding = load_decoding_policy(policy_path)
    forgetting = data.get("forgetting") or {}
    benchmarks = forgetting.get("benchmarks", {})
    if not isinstance(benchmarks, dict) or not all(isinstance(v, str) and v for v in benchmarks.values()):
        raise GovernanceError(f"{where}: forgetting.benchmarks must map a task name to a JSONL file path")
    if "forgetting_drop_max" in thresholds and not benchmarks:
        raise GovernanceError(f"{where}: thresholds.forgetting_drop_max needs forgetting.benchmarks")
    limit = forgetting.get("limit", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise GovernanceError(f"{where}: forgetting.limit must be an integer >= 0 (0: every item), got {limit!r}")
    statistics = _section(Statistics, "statistics", data.get("statistics") or {}, where)
    unknown = sorted(set(statistics.discordance_by_rule) - set(THRESHOLDS) - RELEASE_RULES - {"vs_champion"})
    if unknown:
        raise GovernanceError(f"{where}: statistics.discordance_by_rule: unknown rule(s) {', '.join(unknown)}")
    champion = _section(Champion, "champion", data.get("champion") or {}, where)
    for metric, margin in champion.margins.items():
        high = 100.0 if metric == "forgetting" else 1.0
        if metric not in CHAMPION_METRICS:
            raise GovernanceError(f"{where}: champion.margins.{metric}: unknown metric "
                                  f"(known: {', '.join(sorted(CHAMPION_METRICS))})")
        if not 0 <= margin <= high:
            raise GovernanceError(f"{where}: champion.margins.{metric}: {margin!r} out of range [0, {high:g}]")
    judge = load_judge(data.get("judge"), where, data_dir, digest)
    judged = sorted(name for name, task in tasks.items() if task.judged())
    if judged and judge is None:
        raise GovernanceError(f"{where}: tasks {', '.join(judged)} use a judge metric but the contract declares no judge")
    review = dict(data.get("human_review") or {})
    size = review.get("sample_size", 16)
    if size == "auto":
        from ftassets.lib.core.stats import review_size

        detect = _section(HumanReview, "human_review", {k: v for k, v in review.items() if k != "sample_size"},
                          where).detect
        review.update(sample_size=min(1000, review_size(detect, statistics.confidence, statistics.power)),
                      auto_size=True)
    elif isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 1000:
        raise GovernanceError(f"{where}: human_review.sample_size must be an integer in [1, 1000] or auto, "
                              f"got {size!r}")
    if not isinstance(review.get("blind_compare", True), bool):
        raise GovernanceError(f"{where}: human_review.blind_compare must be true or false")
    parity = data.get("parity") or {}
    if "max_logit_diff" in parity and not 0 < float(parity["max_logit_diff"]) < 10:
        raise GovernanceError(f"{where}: parity.max_logit_diff out of range (0, 10)")
    benchmark_files = resolve_benchmarks(benchmarks, lambda rel: data_dir / rel, digest)
    return EvalContract(
        version=data["version"], models=tuple(models), tuned_model=data["tuned_model"], tasks=tasks,
        task_success_average=average, release_rule=data["release_rule"], thresholds=dict(thresholds), decoding_policy=str(data["decoding_policy"]),
        decoding=decoding, decoding_policy_sha256=digest(policy_path),
        forgetting=_section(Forgetting, "forgetting", forgetting, where),
        human_review=_section(HumanReview, "human_review", review, where),
        parity=_section(Parity, "parity", parity, where),
        selection=_section(Selection, "selection", data.get("selection") or {}, where), statistics=statistics,
        champion=champion, judge=judge, exports=_section(Exports, "exports", data.get("exports") or {}, where),
        benchmark_files=benchmark_files)


def load_judge(raw: dict | None, where: str, data_dir: Path, digest) -> JudgeSpec | None:
    """The judge section with its prompt read and hashed and its identity: a local folder's weights hash
    (safetensors only), or the endpoint's url and model name."""
    if not raw:
        return None
    spec = _section(JudgeSpec, "judge", raw, where)
    if bool(spec.model) == (spec.endpoint is not None):
        raise GovernanceError(f"{where}: judge needs exactly one of model (a local folder) or endpoint")
    prompt = Path(spec.prompt) if Path(spec.prompt).is_absolute() else data_dir / spec.prompt
    if not prompt.is_file():
        raise GovernanceError(f"{where}: judge.prompt: {prompt} not found")
    template = prompt.read_text(encoding="utf-8")
    missing = [p for p in ("{prompt}", "{reply}") if p not in template]
    if missing:
        raise GovernanceError(f"{where}: judge.prompt: {prompt} lacks {', '.join(missing)}")
    if spec.endpoint is not None:
        identity = {"kind": "endpoint", "url": spec.endpoint.url, "model": spec.endpoint.model}
    else:
        from ftassets.lib.core.models import weights_sha256

        folder = Path(spec.model) if Path(spec.model).is_absolute() else data_dir / spec.model
        try:
            identity = {"kind": "local", "path": str(folder), "weights_sha256": weights_sha256(folder)}
        except FileNotFoundError as exc:
            raise GovernanceError(f"{where}: judge.model: {exc}") from None
    return spec.model_copy(update={"prompt_template": template, "prompt_sha256": digest(prompt), "identity": identity})


def _section(model: type[BaseModel], name: str, data: dict, where: str):
    """A contract section as its typed object; a wrong type or an unknown key names file, section and field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"])
        raise GovernanceError(f"{where}: {name}.{field}: {first['msg']} (got {first['input']!r})") from None


def load_decoding_policy(path: Path) -> dict:
    """Per-task decoding: `default` plus overrides, each with max_new_tokens (1..2048) and
    temperature (0 = greedy, up to 2)."""
    data = load_yaml(path)
    where = str(path)
    if "default" not in data:
        raise GovernanceError(f"{where}: decoding policy must have a 'default' entry")
    for task, policy in data.items():
        if not isinstance(policy, dict) or set(policy) - DECODING_KEYS:
            raise GovernanceError(f"{where}: {task}: only {sorted(DECODING_KEYS)} are allowed, got {policy!r}")
        tokens, temperature = policy.get("max_new_tokens", 64), policy.get("temperature", 0.0)
        if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= 2048:
            raise GovernanceError(f"{where}: {task}.max_new_tokens: {tokens!r} out of range [1, 2048]")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise GovernanceError(f"{where}: {task}.temperature: {temperature!r} out of range [0, 2]")
    return data


def resolve_benchmarks(benchmarks: dict[str, str], resolve, digest) -> dict[str, BenchmarkFile]:
    """Path and hash of each forgetting benchmark; `resolve(relative) -> Path` places a path under the
    data dir (an absolute path stays). A missing file is an error naming the contract key."""
    out = {}
    for name, relative in benchmarks.items():
        path = Path(relative) if Path(relative).is_absolute() else Path(resolve(relative))
        if not path.is_file():
            raise GovernanceError(f"eval contract: forgetting.benchmarks.{name}: {path} not found")
        out[name] = BenchmarkFile(path=str(path), sha256=digest(path))
    return out


