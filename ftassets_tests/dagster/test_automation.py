"""Automation: code versions from source, conditions that wait for upstream blocking checks across
runs, the training policy, the source and review sensors, incident records. Conditions are evaluated
against a real (ephemeral) instance whose history is reported as runless events, tick by tick."""

import json
import shutil

import dagster as dg
import pytest
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

from ftassets.definitions import STAGES
from ftassets.defs.curation.settings import CurationSettings
from ftassets.defs.platform import conditions, sensors
from ftassets.defs.platform.resources import ArtifactStore, default_resources
from ftassets.lib.core.catalog import Catalog
from ftassets.lib.core.code_version import ROOT, code_version, module_closure
from ftassets_tests.conftest import data_copy

ALL = conditions.GOVERNANCE + conditions.CURATION + conditions.MODEL_ASSETS


def _defs(policy: str) -> dg.Definitions:
    return dg.Definitions(assets=conditions.with_policies(STAGES, policy, "0 3 * * *"),
                          asset_checks=dg.load_asset_checks_from_modules(STAGES), resources=default_resources())


def _checks(defs) -> dict[str, list[dg.AssetCheckKey]]:
    out = {}
    for ck in defs.resolve_asset_graph().asset_check_keys:
        out.setdefault(ck.asset_key.to_user_string(), []).append(ck)
    return out


class History:
    """Reports materializations (with data versions) and check results the way runs would."""

    def __init__(self, defs):
        self.instance = dg.DagsterInstance.ephemeral()
        self.defs, self.checks, self.cursor = defs, _checks(defs), None

    def materialize(self, key: str, version: str, checks_pass: bool = True, failing: str | None = None):
        self.instance.report_runless_asset_event(dg.AssetMaterialization(
            key, tags={"dagster/data_version": version, "dagster/data_version_is_user_provided": "true"}))
        record = self.instance.fetch_materializations(dg.AssetKey(key), limit=1).records[0]
        for ck in self.checks.get(key, []):
            passed = checks_pass and ck.name != failing
            self.instance.report_runless_asset_event(dg.AssetCheckEvaluation(
                asset_key=ck.asset_key, check_name=ck.name, passed=passed,
                severity=dg.AssetCheckSeverity.ERROR, blocking=True,
                target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp)))

    def tick(self, at=None) -> set[str]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor,
                                                   evaluation_time=at)
        self.cursor = result.cursor
        return {key for key in ALL if result.get_requested_partitions(dg.AssetKey(key))}


def _settled(policy: str, at=None) -> History:
    """Everything materialized once, every check passing, and one tick to settle."""
    history = History(_defs(policy))
    for key in ALL:
        history.materialize(key, "v1")
    assert history.tick(at) == set()
    return history


AFTER_SFT = {"dpo_adapter", "merged_model", "eval_report", "blind_review_packet", "human_review", "judge_calibration", "release_decision",
             "serving_bundle", "gguf_export"}
CURATION_AFTER_SCRUB = {"deduplicated_examples", "frozen_test_set", "data_splits", "preference_pairs"}


def test_failing_blocking_check_on_scrubbed_examples_stops_everything_downstream():
    history = _settled("eager")  # even with training on eager, nothing may run past a failed gate
    history.materialize("scrubbed_examples", "v2", failing="no_residual_pii")
    assert history.tick() == set()
    assert history.tick() == set()  # and it stays stopped
    history.materialize("scrubbed_examples", "v3")  # fixed: the check passes on the new materialization
    assert history.tick() == CURATION_AFTER_SCRUB


def test_manual_training_policy_curates_but_never_trains_or_evaluates():
    history = _settled("manual")
    history.materialize("scrubbed_examples", "v2")
    assert history.tick() == CURATION_AFTER_SCRUB
    for key in sorted(CURATION_AFTER_SCRUB):  # the held-out sets are hash-locked: same content, same version
        history.materialize(key, "v2" if key in ("deduplicated_examples", "data_splits", "preference_pairs") else "v1")
    assert history.tick() == set()  # changed splits, but training is manual; the frozen test set did not change
    history.materialize("sft_adapter", "v2")  # a person trains: everything after it follows, in one tick
    assert history.tick() == AFTER_SFT


def test_unchanged_data_versions_launch_nothing():
    history = _settled("eager")
    for key in conditions.CURATION:  # a nightly re-curation of unchanged sources: new runs, same content
        history.materialize(key, "v1")
    assert history.tick() == set()


def test_eager_training_waits_for_curation_and_retrains_only_on_changed_data():
    history = _settled("eager")
    history.materialize("scrubbed_examples", "v2")
    assert "sft_adapter" not in history.tick()  # no same-tick retraining: wait for the new splits
    for key in sorted(CURATION_AFTER_SCRUB):
        history.materialize(key, "v1")  # re-curated to identical content
    assert history.tick() == set()
    history.materialize("data_splits", "v3")
    assert history.tick() == {"sft_adapter"} | AFTER_SFT  # one run: train, then everything that follows


def test_cron_training_runs_on_the_tick_only_when_curated_data_changed():
    import datetime

    day = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    at = lambda d, h, m: day + datetime.timedelta(days=d, hours=h, minutes=m)  # noqa: E731  (cron: 03:00 UTC)
    history = _settled("cron", at(1, 2, 0))
    assert history.tick(at(1, 3, 1)) == set()  # a tick, but nothing changed since the last adapter
    history.materialize("data_splits", "v2")
    assert history.tick(at(1, 4, 0)) == set()  # changed, but between ticks: wait for the next one
    assert history.tick(at(2, 2, 59)) == set()
    assert history.tick(at(2, 3, 1)) == {"sft_adapter"} | AFTER_SFT
    history.materialize("sft_adapter", "v2")
    assert history.tick(at(3, 3, 1)) - AFTER_SFT == set()  # trained on that change: the next tick does not retrain


def test_rejected_release_does_not_build_a_bundle_in_a_later_tick():
    history = _settled("manual")
    history.materialize("release_decision", "v2", failing="release_gate")
    assert "serving_bundle" not in history.tick()
    history.materialize("release_decision", "v3")
    assert history.tick() == {"serving_bundle", "gguf_export"}


def test_code_versions_follow_the_source_a_stage_imports():
    from pathlib import Path

    import ftassets.defs.curation.cleaning as curation
    import ftassets.defs.training as training

    def closure(path, extra=()):
        return {p.relative_to(ROOT).as_posix() for p in module_closure(Path(path), extra)}

    assert {"defs/curation/cleaning.py", "lib/curation/pii.py", "lib/curation/dedup.py",
            "lib/curation/validation.py"} <= closure(curation.__file__)
    assert "lib/training/sft.py" not in closure(curation.__file__)
    assert "lib/training/dpo.py" in closure(training.__file__, conditions.TRAINING_RECIPES)
    versions = {n.key.to_user_string(): n.code_version for n in _defs("manual").resolve_asset_graph().asset_nodes}
    assert versions["scrubbed_examples"] == versions["validated_examples"] == code_version(Path(curation.__file__))
    assert versions["sft_adapter"] != versions["scrubbed_examples"] and len(versions["sft_adapter"]) == 16


def test_training_policy_setting_is_checked(monkeypatch):
    monkeypatch.setenv("FTASSETS_TRAINING_POLICY", "sometimes")
    with pytest.raises(ValueError, match="FTASSETS_TRAINING_POLICY must be one of manual, cron, eager"):
        conditions.training_policy()


def test_source_sensor_requests_curation_once_per_state_of_the_data(tmp_path):
    data = data_copy(tmp_path, "raw")
    store = ArtifactStore(data_dir=str(data), artifacts_dir=str(tmp_path / "artifacts"))
    instance = dg.DagsterInstance.ephemeral()

    def evaluate(cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor,
                                     resources={"store": store, "curation": CurationSettings()}) as ctx:
            return sensors.raw_sources_sensor(ctx)

    waiting = evaluate(None)
    assert isinstance(waiting, dg.SkipReason) and "base_model is not materialized" in waiting.skip_message
    instance.report_runless_asset_event(dg.AssetMaterialization("base_model"))
    first = evaluate(None)
    sources = ["general_replay", "support_chat", "support_preferences"]
    assert len(first.run_requests) == 1 and {o.partition for o in first.asset_events} == set(sources)
    assert first.dynamic_partitions_requests[0].partition_keys == sources
    instance.add_dynamic_partitions("raw_sources", sources)  # as the daemon would
    assert isinstance(evaluate(first.cursor), dg.SkipReason)  # nothing changed: no run
    examples = data / "raw/support_chat/examples.jsonl"
    original = examples.read_bytes()  # holds a deliberately malformed (non-UTF-8) line: edit as bytes
    examples.write_bytes(original.replace(b"platform support", b"platform helpdesk", 1))  # edit one example
    second = evaluate(first.cursor)
    assert [o.partition for o in second.asset_events] == ["support_chat"]
    assert second.run_requests[0].run_key != first.run_requests[0].run_key
    assert "changed: support_chat" in second.run_requests[0].tags["ftassets/source_changes"]
    examples.write_bytes(original)  # edited back: the same state as at first, the same run key
    assert evaluate(second.cursor).run_requests[0].run_key == first.run_requests[0].run_key
    shutil.copytree(data / "raw/support_chat", data / "raw/new_team")  # a new source folder
    third = evaluate(first.cursor)
    assert "new: new_team" in third.run_requests[0].tags["ftassets/source_changes"]
    assert third.dynamic_partitions_requests[0].partition_keys == ["new_team"]
    assert json.loads(third.cursor)["new_team"] == json.loads(third.cursor)["support_chat"]


def test_source_sensor_without_a_cursor_starts_from_what_was_last_curated(tmp_path):
    """The first daemon tick after `make run` (observations, then curation) launches nothing."""
    from ftassets.defs.curation.cleaning import observe_sources

    data = data_copy(tmp_path, "raw")
    store = ArtifactStore(data_dir=str(data), artifacts_dir=str(tmp_path / "artifacts"))
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetMaterialization("base_model"))
    observe_sources(instance, store, CurationSettings())  # what `ftassets run` does before it curates
    with dg.build_sensor_context(instance=instance, resources={"store": store, "curation": CurationSettings()}) as ctx:
        assert len(sensors.raw_sources_sensor(ctx).run_requests) == 1  # observed, not curated yet: curate
    instance.report_runless_asset_event(dg.AssetMaterialization("validated_examples"))
    with dg.build_sensor_context(instance=instance, resources={"store": store, "curation": CurationSettings()}) as ctx:
        assert "no source changed" in sensors.raw_sources_sensor(ctx).skip_message
    (data / "raw/support_chat/examples.jsonl").write_bytes(b"{}\n")  # changed after that curation
    with dg.build_sensor_context(instance=instance, resources={"store": store, "curation": CurationSettings()}) as ctx:
        result = sensors.raw_sources_sensor(ctx)
    assert result.run_requests[0].tags["ftassets/source_changes"] == "changed: support_chat"


def test_review_sensor_runs_once_per_graded_file(tmp_path):
    store = ArtifactStore(data_dir=str(tmp_path / "data"), artifacts_dir=str(tmp_path / "artifacts"))
    instance = dg.DagsterInstance.ephemeral()

    def evaluate():
        with dg.build_sensor_context(instance=instance, resources={"store": store}) as ctx:
            return sensors.review_sensor(ctx)

    assert isinstance(evaluate(), dg.SkipReason)
    (tmp_path / "artifacts/blind_review_packet").mkdir(parents=True)
    (Catalog(tmp_path / "artifacts").path("blind_review_packet", "key")).write_text(json.dumps({"packet_id": "p1"}))
    assert "waiting for" in evaluate().skip_message
    (tmp_path / "data/reviews").mkdir(parents=True)
    (tmp_path / "data/reviews/p1.jsonl").write_text('{"pair": 0, "preferred": "A"}\n')
    key = evaluate().run_key
    assert key.startswith("review-p1-") and evaluate().run_key == key
    (tmp_path / "data/reviews/p1.jsonl").write_text('{"pair": 0, "preferred": "B"}\n')
    assert evaluate().run_key != key


def test_incident_record_names_the_run_and_steps_without_data():
    run = dg.DagsterRun(job_name="__ASSET_JOB", run_id="r1", tags={"ftassets/trigger": "automation",
                                                                   "dagster/max_retries": "0"},
                        asset_selection={dg.AssetKey("sft_adapter")})
    record = sensors.incident_record(run, "Execution of step sft_adapter failed.\nTraceback ...", ["sft_adapter"])
    assert record["error"] == "Execution of step sft_adapter failed." and record["assets"] == ["sft_adapter"]
    assert record["retries_allowed"] == "0" and record["trigger"] == "automation"


def test_project_definitions_carry_the_automation():
    from ftassets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} == {"raw_sources_sensor", "review_sensor", "incident_sensor",
                                                  "dead_runs_sensor", "curation_automation", "model_automation"}
    assert repo.get_schedule_def("nightly_recuration").cron_schedule == "0 2 * * *"
    graph = defs.resolve_asset_graph()
    conditioned = {n.key.to_user_string() for n in graph.asset_nodes if n.automation_condition is not None}
    assert conditioned == set(conditions.CURATION + conditions.MODEL_ASSETS) - {
        "validated_examples", "gold_set", "redteam_set", "sft_adapter"}  # manual training by default
    targeted = set()
    for sensor in (repo.get_sensor_def("curation_automation"), repo.get_sensor_def("model_automation")):
        targeted |= {k.to_user_string() for k in sensor.asset_selection.resolve(graph)}
    assert conditioned <= targeted
