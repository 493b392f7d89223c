"""Evaluation: every compared model side by side on the frozen test set, gold set, red-team prompts,
perplexity and forgetting benchmarks; and the blind human review of base vs tuned replies."""


import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from ftassets.defs.platform import lineage
from ftassets.defs.platform.metadata import review_table, upstream_versions
from ftassets.defs.platform.resources import ArtifactStore
from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.contract import EvalContract
from ftassets.lib.core.files import sha256_file, sha256_json, write_jsonl_atomic
from ftassets.lib.core.models import adapter_model, load_model, load_tokenizer, weights_sha256
from ftassets.lib.core.plots import loss_curves_png, markdown_image
from ftassets.lib.evaluation import evaluate as ev
from ftassets.lib.evaluation import report as report_lib
from ftassets.lib.evaluation import review, toxicity
from ftassets.lib.evaluation import judge as judge_lib
from ftassets.lib.evaluation.judge import make_judge
from ftassets.lib.evaluation.replies_cache import RepliesCache
from ftassets.lib.release import versions
from ftassets.lib.core.scoring import check_declared
from ftassets.lib.curation.identifiers import safe

GROUP = "evaluation"
EVAL_INPUTS = ["base_model", "sft_adapter", "dpo_adapter", "merged_model", "frozen_test_set", "gold_set",
               "redteam_set", "data_splits", "eval_contract"]


def _load_compared(store: ArtifactStore, key: str):
    base = str(store.artifact("base_model"))
    if key == "base_model":
        return load_model(store.artifact("base_model"))
    if key == "merged_model":
        return load_model(store.artifact("merged_model"))
    if key == "sft_adapter":
        return adapter_model(base, [str(store.artifact("sft_adapter"))])
    return adapter_model(base, [str(store.artifact("sft_adapter")), str(store.artifact("dpo_adapter"))])


def champion(store: ArtifactStore, instance: dg.DagsterInstance) -> tuple[Path | None, dict]:
    """The released model a candidate is compared with: the instance's current release (its newest `release`
    decision, or the one a later rollback made current), read from the bundle kept for the merged weights that
    decision released (lib/release/versions.py). Before the first release: none (the gate compares with the
    base). A release whose bundle is gone or changed is an error the gate reports, never a silent fallback."""
    current = lineage.current_release(instance)
    if current is None:
        return None, {"release_name": None, "reference": "base_model"}
    info = {"release_name": current["release_name"], "run_id": current.get("run_id"), "reference": "champion",
            **({"rolled_back": current["rolled_back"]} if "rolled_back" in current else {})}
    released = current.get("merged_weights_sha256")  # a decision records the weights it released
    kept, problem = versions.find(store.catalog.releases(), released)
    if kept is None and not (released and versions.version_dir(store.catalog.releases(), released).is_dir()):
        # bundled before releases were kept: keep the serving bundle if it holds this release
        bundle, problem = _bundle_holding(store, released, current.get("run_id"))
        kept = versions.keep(bundle, store.catalog.releases()) if bundle else None
    if kept is None:
        return None, {**info, "error": problem}
    weights = versions.read_json(kept / file_name("serving_bundle", "files"))[file_name("serving_bundle", "model_weights")]
    return kept / file_name("serving_bundle", "model"), {**info, "weights_sha256": weights}


def _bundle_holding(store: ArtifactStore, weights: str | None, run_id: str | None) -> tuple[Path | None, str | None]:
    """The serving_bundle folder when it holds exactly these merged weights as bundled (or, for a decision
    that recorded no weights, the bundle that decision's run built)."""
    manifest = store.path("serving_bundle", "manifest")
    if not manifest.is_file():
        return None, f"its serving bundle is missing ({manifest.parent})"
    if versions.verify(store.artifact("serving_bundle")) is not None:
        return None, f"the bundled weights changed since they were bundled ({manifest.parent})"
    held = store.read_json("serving_bundle", "files").get(file_name("serving_bundle", "model_weights"))
    bundled = store.read_json("serving_bundle", "manifest")
    if (held != weights) if weights else (bundled.get("run_id") != run_id):
        return None, (f"the serving bundle holds {bundled.get('release_name')} (weights {str(held)[:12]}), not the "
                      f"model run {str(run_id)[:8]} released" + (f" (weights {weights[:12]})" if weights else ""))
    return store.artifact("serving_bundle"), None


def _model_ids(store: ArtifactStore, keys: list[str]) -> dict[str, str]:
    """What each compared model's replies depend on: its weights, or the base's and each adapter's in order
    (each weights file hashed once)."""
    base = f"base:{weights_sha256(store.artifact('base_model'))}"
    adapters = {a: f"{a}:{sha256_file(store.path(a, 'adapter_weights'))}" for a in ("sft_adapter", "dpo_adapter")
                if a in keys or (a == "sft_adapter" and "dpo_adapter" in keys)}
    ids = {"base_model": base, "sft_adapter": f"{base};{adapters.get('sft_adapter')}",
           "dpo_adapter": f"{base};{adapters.get('sft_adapter')};{adapters.get('dpo_adapter')}"}
    if "merged_model" in keys:
        ids["merged_model"] = f"merged:{sha256_file(store.path('merged_model', 'weights'))}"
    return {k: ids[k] for k in keys}


def _eval_inputs(store: ArtifactStore, contract: EvalContract) -> ev.EvalInputs:
    test = store.records("frozen_test_set", "test")
    return ev.EvalInputs(
        test_records=test, gold=store.records("gold_set", "gold"), redteam=store.records("redteam_set", "redteam"),
        perplexity_sets={"validation": store.records("data_splits", "validation"), "test": test},
        benchmarks=contract.benchmark_paths(), benchmark_limit=contract.forgetting.limit or None)


def _loss_plots(store: ArtifactStore) -> list[str]:
    out = []
    for key in ("sft_adapter", "dpo_adapter"):
        png = loss_curves_png(store.read_json(key, "summary"), key) if store.path(key, "summary").is_file() else None
        if png:
            out.append(markdown_image(png, f"{key} loss curves"))
    return out


@dg.asset(group_name=GROUP, kinds={"lm-eval", "json", "markdown"}, deps=EVAL_INPUTS, pool="heavy_compute",
          description="Every compared model side by side: frozen-test task metrics, gold set, refusal and "
                      "toxicity on red-team prompts, perplexity on assistant tokens, lm-eval forgetting.")
def eval_report(context: dg.AssetExecutionContext, store: ArtifactStore) -> dg.MaterializeResult:
    contract = store.contract()
    inputs = _eval_inputs(store, contract)
    data_tasks = {r.get("meta", {}).get("task") for split in ("train", "validation")
                  for r in store.records("data_splits", split)}
    check_declared(contract.tasks, {r["meta"]["task"] for r in inputs.test_records}, inputs.gold, data_tasks)
    tokenizer = load_tokenizer(store.artifact("base_model"))
    champion_dir, champion_info = champion(store, context.instance)
    compared = list(contract.models) + (["champion"] if champion_dir else [])
    judge = make_judge(contract.judge) if contract.judge and any(t.judged() for t in contract.tasks.values()) else None
    cache = RepliesCache(store.catalog.generation_cache())
    ids = _model_ids(store, list(contract.models))
    if champion_dir:  # the bundle's weights are the released merged model's: one evaluated as a candidate is cached
        ids["champion"] = f"merged:{champion_info['weights_sha256']}"
    results, timings = {}, {}
    for key in compared:
        if key == "champion" and "merged_model" in results and ids["champion"] == ids["merged_model"]:
            # the candidate is the release: same weights, same replies
            results[key], timings[key] = results["merged_model"], 0.0
            champion_info = {**champion_info, "same_weights_as": "merged_model"}
            context.log.info("champion: the same weights as merged_model; its results are reused")
            continue
        started = time.perf_counter()
        model = load_model(champion_dir) if key == "champion" else _load_compared(store, key)
        own = load_tokenizer(champion_dir) if key == "champion" else tokenizer  # a release keeps its tokenizer
        results[key] = ev.evaluate_model(model, own, inputs, contract.decoding, contract.tasks,
                                          contract.task_success_average, judge, cache, ids[key])
        timings[key] = round(time.perf_counter() - started, 1)
        context.log.info(f"evaluated {key}: task_success={results[key]['test']['task_success']} "
                         f"gold={results[key]['gold']['pass_rate']} in {timings[key]}s"
                         + (" (replies from the cache)" if results[key]["replies_cached"] else ""))
    tuned = contract.tuned_model
    report = {"models": results, "tuned_model": tuned, "test_items": len(inputs.test_records),
              "gold_items": len(inputs.gold), "redteam_items": len(inputs.redteam),
              "regressions": ev.regressions(results["base_model"], results[tuned]),
              "forgetting": ev.forgetting_drops(results), "champion": champion_info,
              "judge": None if judge is None else {**contract.judge.identity, "prompt_sha256": contract.judge.prompt_sha256,
                                                   "errors": getattr(judge, "errors", [])[:20]},
              "toxicity_measure": toxicity.MEASURE,
              "decoding_policy": contract.decoding, "eval_seconds": timings,
              "contract_version": contract.version, "input_versions": upstream_versions(context, EVAL_INPUTS)}
    adapter_key = "dpo_adapter" if "dpo_adapter" in results else "sft_adapter"
    if adapter_key in results and "merged_model" in results:
        report["adapter_merged_task_gap"] = abs(results[adapter_key]["test"]["task_success"]
                                                - results["merged_model"]["test"]["task_success"])
    markdown = report_lib.report_markdown(report, thresholds=contract.thresholds,
                                          test=ev.test_items(inputs.test_records))
    plots = _loss_plots(store)
    with store.catalog.unit("eval_report") as catalog:  # the JSON and its Markdown rendering switch together
        json_path = catalog.write_json("eval_report", "report", report)
        md_path = catalog.write_text("eval_report", "markdown", "\n\n".join(
            ["# Evaluation report", markdown, "## Training curves", *plots]) + "\n")
    summary = {k: {"task_success": v["test"]["task_success"], "gold_pass_rate": v["gold"]["pass_rate"],
                   "refusal_rate": v["safety"]["refusal_rate"], "toxic_rate": v["safety"]["toxic_rate"]}
               for k, v in results.items()}
    return dg.MaterializeResult(metadata={
        **headline_numbers(results, tuned),
        "report": dg.MetadataValue.md(markdown), "summary": dg.MetadataValue.json(summary),
        "base_only_correct": report["regressions"]["count"],
        "forgetting": dg.MetadataValue.json({k: {b: d["drop_points"] for b, d in v.items()}
                                             for k, v in report["forgetting"].items()}),
        "eval_seconds": dg.MetadataValue.json(timings),
        "replies_cached": dg.MetadataValue.json({k: v.get("replies_cached", False) for k, v in results.items()}),
        "json_path": dg.MetadataValue.path(str(json_path)), "markdown_path": dg.MetadataValue.path(str(md_path))},
        data_version=dg.DataVersion(sha256_file(json_path)[:32]))


def headline_numbers(results: dict, tuned: str) -> dict:
    """The headline figures as numeric metadata, tuned and base side by side with the delta, overall and per
    task: Dagster's Plots tab then charts each across materializations (one point per release candidate)."""
    def figures(m: dict) -> dict[str, float | None]:
        out = {"task_success": m["test"]["task_success"], "gold_pass_rate": m["gold"]["pass_rate"],
               "refusal_rate": m["safety"]["refusal_rate"], "toxic_rate": m["safety"]["toxic_rate"]}
        out.update({f"task/{t}/success": s.get("success") for t, s in m["test"]["per_task"].items()})
        return out

    mine, base = figures(results[tuned]), figures(results["base_model"])
    numbers = {}
    for name, value in mine.items():
        if value is None:
            continue
        numbers[f"tuned/{name}"] = dg.MetadataValue.float(float(value))
        if base.get(name) is not None:
            numbers[f"base/{name}"] = dg.MetadataValue.float(float(base[name]))
            numbers[f"delta/{name}"] = dg.MetadataValue.float(round(float(value) - float(base[name]), 4))
    return numbers


@dg.asset(group_name=GROUP, kinds={"json"}, deps=[eval_report, "eval_contract"],
          description="A/B pairs of base and tuned replies on frozen test items, model names hidden, order "
                      "shuffled; the key is sealed (only its hash is shown).")
def blind_review_packet(store: ArtifactStore) -> dg.MaterializeResult:
    contract = store.contract()
    report = store.read_json("eval_report", "report")
    settings, tuned = contract.human_review, contract.tuned_model
    replies = {k: {i["id"]: i["reply"] for i in report["models"][k]["items"]} for k in ("base_model", tuned)}
    test = ev.test_items(store.records("frozen_test_set", "test"))
    rows, key = review.make_packet(test, replies["base_model"], replies[tuned], tuned, settings.sample_size,
                                   settings.seed, settings.blind_compare)
    with store.catalog.unit("blind_review_packet") as catalog:  # a packet is never paired with another's key
        packet = catalog.write_records("blind_review_packet", "packet", rows)
        catalog.write_json("blind_review_packet", "key", key)
    return dg.MaterializeResult(metadata={
        "packet_id": key["packet_id"], "pairs": len(rows), "key_sha256": review.key_digest(key),
        "packet_path": dg.MetadataValue.path(str(packet)), "packet": review_table(rows),
        "instructions": dg.MetadataValue.md(
            "Read the `packet` table and grade in the UI: materialize `human_review` with config "
            "`grades: {pair-001: A, pair-002: tie, ...}` (A, B or tie per pair). Or copy "
            f"`{packet.name}` to `{store.graded_review(key['packet_id'])}`, set `preferred` on each row, and "
            "materialize `human_review`.")},
        data_version=dg.DataVersion(key["packet_id"]))


class ReviewConfig(dg.Config):
    """Grades entered in the UI (the launchpad's config form on `human_review`) instead of a file."""

    grades: dict[str, str] = Field(default_factory=dict, description="pair_id -> A, B or tie, read from the "
                                   "`packet` table of blind_review_packet; saved as the graded file, on top of "
                                   "grades already there")
    reviewer: str = Field("", description="who graded (kept in the graded file; a name is stored as its hash)")


@dg.asset(group_name=GROUP, kinds={"json"}, deps=[blind_review_packet],
          description="Win rate of the tuned model in the graded blind review (pending until a graded file arrives, "
                      "or grades are entered in this asset's config form).")
def human_review(context: dg.AssetExecutionContext, config: ReviewConfig, store: ArtifactStore) -> dg.MaterializeResult:
    key = store.read_json("blind_review_packet", "key")
    graded = store.graded_review(key["packet_id"])
    if config.grades:  # graded in the UI: written as the file a reviewer would have dropped, then read back
        earlier = review.read_grades(graded, key) if graded.is_file() else None
        rows = review.grade_rows(store.records("blind_review_packet", "packet"), config.grades,
                                 safe(config.reviewer.strip()), earlier)
        write_jsonl_atomic(graded, rows)
        context.log.info(f"{len(config.grades)} grade(s) from the config form saved to {graded}")
    if graded.is_file():
        result = {"status": "graded", "file": str(graded), "file_sha256": sha256_file(graded),
                  **review.win_rate(review.read_grades(graded, key), key)}
    else:
        result = {"status": "pending", "file": str(graded), "graded": 0, "pairs": len(key["pairs"]),
                  "tuned_win_rate": None}
    result["packet_id"] = key["packet_id"]
    store.catalog.write_json("human_review", "review", result)
    return dg.MaterializeResult(metadata={
        "status": result["status"], "graded": result["graded"], "pairs": result["pairs"],
        "tuned_win_rate": result["tuned_win_rate"] if result["tuned_win_rate"] is not None else "n/a",
        "expected_file": dg.MetadataValue.path(str(graded))},
        data_version=dg.DataVersion(sha256_json(result)[:32]))


@dg.asset(group_name=GROUP, kinds={"json"}, deps=[human_review, "frozen_test_set", "eval_contract"],
          description="The judge's agreement with people: it answers the graded blind review pairs and its A / B / "
                      "tie is compared with the reviewers' (Cohen's kappa and raw agreement, with intervals). A "
                      "judge metric may feed a release rule only when kappa's lower bound reaches the contract's bar.")
def judge_calibration(context: dg.AssetExecutionContext, store: ArtifactStore) -> dg.MaterializeResult:
    contract = store.contract()
    result = calibrate(store, contract)
    store.catalog.write_json("judge_calibration", "calibration", result)
    context.log.info(f"judge: {result['status']} ({result.get('why', '')})")
    return dg.MaterializeResult(metadata={
        "status": result["status"], "why": result.get("why", ""), "pairs": result.get("n", 0),
        "kappa": result.get("kappa") if result.get("kappa") is not None else "n/a",
        "kappa_interval": dg.MetadataValue.json(result.get("kappa_interval")),
        "agreement": result.get("agreement") if result.get("agreement") is not None else "n/a",
        "judge": dg.MetadataValue.json(result.get("judge"))},
        data_version=dg.DataVersion(sha256_json(result)[:32]))


def calibrate(store: ArtifactStore, contract: EvalContract) -> dict:
    """The judge on every graded pair of the blind review: calibrated when kappa's lower bound reaches the bar."""
    spec = contract.judge
    if spec is None:
        return {"status": "no judge"}
    judge_id = spec.calibrated_as()
    graded_review = store.read_json("human_review", "review")
    if graded_review["status"] != "graded":
        return {"status": "uncalibrated", "why": "no graded blind review yet", "judge": judge_id}
    key = store.read_json("blind_review_packet", "key")
    grades = review.read_grades(store.graded_review(key["packet_id"]), key)
    if len(grades) < spec.min_pairs:
        return {"status": "uncalibrated", "why": f"{len(grades)} graded pairs, judge.min_pairs is {spec.min_pairs}",
                "judge": judge_id}
    references = {r["id"]: r["messages"][-1]["content"] for r in store.records("frozen_test_set", "test")}
    pairs = [{**r, "reference": references.get(key["pairs"][r["pair_id"]]["item_id"], "")}
             for r in store.records("blind_review_packet", "packet") if r["pair_id"] in grades]
    bars = {name: next(m.min for m in task.metrics if m.kind == "judge")
            for name, task in contract.tasks.items() if task.judged()}
    return {**judge_lib.calibration(make_judge(spec), spec, contract.statistics, pairs, grades, bars),
            "judge": judge_id}
