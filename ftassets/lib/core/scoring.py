"""Scoring replies the way the contract declares each task (`lib/core/tasks.py`): one small function
per metric kind, and one loop that applies a task's metrics, combines them by its success rule, and
turns a metric that fails (raises, returns no number) into a failed item with its reason instead of
a failed evaluation. Per-task summaries (means, per-field accuracy and macro-F1, a confusion matrix)
are built from the same item scores."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

from ftassets.lib.core.tasks import (Bleu, Chrf, Classification, ContainsAll, ContainsAny, ExactMatch, JsonSchema,
                                     Numeric, Python, Refusal, Regex, RougeL, TaskSpec, resolve_function)
from ftassets.lib.core.metrics import is_refusal, macro_f1, rouge_l

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def normalize(text: str, steps: list[str]) -> str:
    for step in steps:
        if step == "strip":
            text = text.strip()
        elif step == "lower":
            text = text.lower()
        elif step == "whitespace":
            text = " ".join(text.split())
        elif step == "punctuation":
            text = re.sub(r"[^\w\s]", "", text)
    return text


def json_object(text: str):
    """The first {...} span of a reply parsed as JSON, or None."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        return None
    try:
        return json.loads(match.group(0))
    except json.JSONDecodeError:
        return None


def schema_valid(metric: JsonSchema, text: str):
    """The reply's JSON object when it is valid under the task's schema, else None."""
    import jsonschema

    obj = json_object(text)
    validator = jsonschema.validators.validator_for(metric.schema_content)(metric.schema_content)
    return obj if obj is not None and validator.is_valid(obj) else None


def _exact_match(m: ExactMatch, prediction: str, reference: str) -> dict:
    hit = normalize(prediction, m.normalize) == normalize(reference, m.normalize)
    return {"exact_match": hit, "passed": hit}


def _contains(m: ContainsAll | ContainsAny, prediction: str, reference: str) -> dict:
    text = prediction if m.case_sensitive else prediction.lower()
    found = [(v if m.case_sensitive else v.lower()) in text for v in m.values]
    share = sum(found) / len(found)
    return {f"{m.kind}": share, "passed": all(found) if isinstance(m, ContainsAll) else any(found)}


def _regex(m: Regex, prediction: str, reference: str) -> dict:
    hit = re.search(m.pattern, prediction, re.IGNORECASE if m.ignore_case else 0) is not None
    return {"regex": hit, "passed": hit}


def _json_schema(m: JsonSchema, prediction: str, reference: str) -> dict:
    got, want = schema_valid(m, prediction), schema_valid(m, reference)
    fields = {f: bool(got is not None and want is not None and f in want and got.get(f) == want[f]) for f in m.fields}
    out = {"schema_valid": got is not None, "passed": got is not None and all(fields.values())}
    if fields:
        out["field_exact"] = sum(fields.values()) / len(fields)
    return out


def _classification(m: Classification, prediction: str, reference: str) -> dict:
    labels = {normalize(label, m.normalize): label for label in m.labels}
    got, want = labels.get(normalize(prediction, m.normalize)), labels.get(normalize(reference, m.normalize))
    return {"label_valid": got is not None, "accuracy": got is not None and got == want,
            "passed": got is not None and got == want}


def _rouge_l(m: RougeL, prediction: str, reference: str) -> dict:
    score = rouge_l(prediction, reference)
    return {"rouge_l": score, "passed": score >= m.min}


def _sacrebleu(m: Bleu | Chrf, prediction: str, reference: str) -> dict:
    import sacrebleu

    scorer = sacrebleu.sentence_bleu if isinstance(m, Bleu) else sacrebleu.sentence_chrf
    score = round(scorer(prediction, [reference]).score, 4)
    return {m.kind: score, "passed": score >= m.min}


def _numeric(m: Numeric, prediction: str, reference: str) -> dict:
    got, want = NUMBER.search(prediction), NUMBER.search(reference)
    hit = bool(got and want and abs(float(got.group()) - float(want.group())) <= m.tolerance)
    return {"numeric": hit, "passed": hit}


def _refusal(m: Refusal, prediction: str, reference: str) -> dict:
    refused = is_refusal(prediction)
    return {"refused": refused, "passed": refused == m.expected}


def _python(m: Python, prediction: str, reference: str) -> dict:
    function = resolve_function(m.function, f"metric {m.function}")
    value = call_with_timeout(function, (prediction, reference), m.timeout_s, m.function)
    if isinstance(value, dict):
        if "passed" not in value:
            raise ValueError(f"{m.function} returned a dict without 'passed'")
        return {**{k: v for k, v in value.items() if isinstance(v, (bool, int, float))}, "passed": bool(value["passed"])}
    if isinstance(value, bool):
        return {"python": value, "passed": value}
    if isinstance(value, (int, float)):
        return {"python": float(value), "passed": float(value) >= m.min}
    raise ValueError(f"{m.function} returned {type(value).__name__}, not a bool, number or dict")


class MetricTimeout(BaseException):
    """Not an Exception: a user's `except Exception` inside the metric must not swallow it."""


def call_with_timeout(function, args: tuple, seconds: float, name: str):
    """`function(*args)`, or MetricTimeout after `seconds`. In the main thread an interval timer
    interrupts the call itself; elsewhere (no signals there) the call is left behind in a daemon thread."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        def expire(signum, frame):
            raise MetricTimeout(f"{name} took longer than {seconds}s")

        previous = signal.signal(signal.SIGALRM, expire)
        outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
        started = time.monotonic()
        try:
            return function(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
            if outer:  # an enclosing timer keeps what is left of its time
                signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3))
    result: dict = {}

    def target():
        try:
            result["value"] = function(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name=f"metric {name}")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise MetricTimeout(f"{name} took longer than {seconds}s")
    if "error" in result:
        raise result["error"]
    return result["value"]


SCORERS = {"exact_match": _exact_match, "contains_all": _contains, "contains_any": _contains, "regex": _regex,
           "json_schema": _json_schema, "classification": _classification, "rouge_l": _rouge_l,
           "bleu": _sacrebleu, "chrf": _sacrebleu,
           "numeric": _numeric, "refusal": _refusal, "python": _python}


def _judge(m, prediction: str, reference: str, judged: float | None = None) -> dict:
    """The judge's verdict, asked beforehand in one batch for every reply (lib/evaluation/judge.py)."""
    if judged is None:
        raise ValueError("no judge verdict for this reply (the contract declares no judge, or it failed)")
    return {"judge_yes": round(float(judged), 4), "passed": judged >= m.min}


SCORERS["judge"] = _judge


def score_item(task: TaskSpec, prediction: str, reference: str, judged: float | None = None) -> dict:
    """Every metric of the task on one reply, and `success` by the task's rule. A metric that raises
    fails the item, with its reason under `errors` (the rest of the evaluation goes on). `judged`: the
    judge's probability of "yes" for this reply, for a task with a judge metric."""
    scores, passed, errors = {}, [], []
    for metric in task.metrics:
        try:
            extra = {"judged": judged} if metric.kind == "judge" else {}
            result = SCORERS[metric.kind](metric, prediction, reference, **extra)
        except (Exception, MetricTimeout) as exc:  # noqa: BLE001 - a user's metric must not take the evaluation down
            errors.append(f"{metric.kind}: {type(exc).__name__}: {exc}"[:300])
            passed.append(False)
            continue
        passed.append(bool(result.pop("passed")))
        scores.update(result)
    success = all(passed) if task.success == "all" else any(passed)
    return {**scores, "success": success, **({"errors": errors} if errors else {})}


def field_scores(metric: JsonSchema, pairs: list[tuple[str, str]]) -> dict:
    """Per declared field: accuracy and macro-F1 over (prediction, reference) pairs; an invalid reply
    predicts nothing for every field."""
    parsed = [(schema_valid(metric, p) or {}, schema_valid(metric, r) or {}) for p, r in pairs]
    out = {}
    for field in metric.fields:
        rows = [(got.get(field), want[field]) for got, want in parsed if field in want]
        gold, predicted = [w for _, w in rows], [g for g, _ in rows]
        out[field] = {"accuracy": round(sum(g == w for g, w in rows) / len(rows), 4) if rows else None,
                      "macro_f1": macro_f1(gold, predicted) if rows else None, "n": len(rows)}
    return out


def confusion(metric: Classification, pairs: list[tuple[str, str]]) -> dict:
    """{reference label: {predicted label or '(invalid)': count}} and macro-F1 over the labels."""
    labels = {normalize(label, metric.normalize): label for label in metric.labels}
    rows = [(labels.get(normalize(r, metric.normalize)), labels.get(normalize(p, metric.normalize)) or "(invalid)")
            for p, r in pairs]
    matrix: dict[str, Counter] = {}
    for want, got in rows:
        matrix.setdefault(str(want), Counter())[got] += 1
    return {"macro_f1": macro_f1([w for w, _ in rows], [g for _, g in rows]),
            "confusion": {w: dict(c) for w, c in sorted(matrix.items())}}


def task_details(task: TaskSpec, pairs: list[tuple[str, str]]) -> dict:
    """What a task's metrics report beyond the item means: fields of a schema, a confusion matrix."""
    out = {}
    for metric in task.metrics:
        if isinstance(metric, JsonSchema) and metric.fields:
            out["fields"] = field_scores(metric, pairs)
        elif isinstance(metric, Classification):
            out["classification"] = confusion(metric, pairs)
    return out


def gold_item_passes(rules: dict, prediction: str, schemas: dict[str, JsonSchema]) -> tuple[bool, list[str]]:
    """Apply one gold item's rules; returns (passed, failed rule descriptions). `schema: <task>` checks
    the reply against that declared task's JSON Schema (`schemas`: task -> its json_schema metric)."""
    failed = []
    for needle in rules.get("must_contain", []):
        if needle.lower() not in prediction.lower():
            failed.append(f"must_contain {needle!r}")
    for needle in rules.get("must_not_contain", []):
        if needle.lower() in prediction.lower():
            failed.append(f"must_not_contain {needle!r}")
    if "schema" in rules and schema_valid(schemas[rules["schema"]], prediction) is None:
        failed.append(f"schema {rules['schema']}")
    if "refuse" in rules and is_refusal(prediction) != bool(rules["refuse"]):
        failed.append("refuse" if rules["refuse"] else "must not refuse")
    return not failed, failed


def check_declared(tasks: dict[str, TaskSpec], test_tasks: set[str], gold: list[dict],
                   data_tasks: set[str] | None = None) -> None:
    """Before any generation: every task in the frozen test set is declared, every declared task has
    data (in the test set or, with `data_tasks`, the curated splits: a typo'd task name is not a task
    without items), and every gold `schema` rule names a declared task with a JSON Schema."""
    from ftassets.lib.core.errors import GovernanceError

    undeclared = sorted(test_tasks - set(tasks))
    if undeclared:
        raise GovernanceError(f"eval contract: the frozen test set has task(s) {undeclared} that tasks: does not "
                              f"declare (declared: {sorted(tasks)})")
    if data_tasks is not None:
        empty = sorted(set(tasks) - test_tasks - data_tasks)
        if empty:
            raise GovernanceError(f"eval contract: declared task(s) {empty} have no examples in the curated data "
                                  f"(tasks in the data: {sorted(test_tasks | data_tasks)})")
    schemas = schema_tasks(tasks)
    for item in gold:
        name = item.get("rules", {}).get("schema")
        if name is not None and name not in schemas:
            raise GovernanceError(f"gold set item {item.get('id')}: schema {name!r} names no declared task with a "
                                  f"json_schema metric (those: {sorted(schemas)})")


def schema_tasks(tasks: dict[str, TaskSpec]) -> dict[str, JsonSchema]:
    return {name: task.schema_metric() for name, task in tasks.items() if task.schema_metric() is not None}
