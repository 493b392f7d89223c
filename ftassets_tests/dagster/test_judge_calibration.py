"""judge_calibration as an asset: the judge answers the graded blind review pairs, and the release decision
may lean on its verdicts only when its kappa with the reviewers clears the contract's bar."""

import json
import random

import dagster as dg

from ftassets.defs.evaluation import judge_calibration
from ftassets.defs.platform.resources import ArtifactStore
from ftassets.lib.core import contract
from ftassets.lib.core.catalog import Catalog
from ftassets.lib.core.contract import Statistics, load_judge
from ftassets.lib.core.files import sha256_file
from ftassets.lib.core.tasks import Judge, TaskSpec
from ftassets.lib.evaluation import judge as judge_lib
from ftassets.lib.evaluation.review import graded_file
from ftassets_tests.conftest import DATA

PROMPT = "Request: {prompt}\nReference: {reference}\nReply: {reply}\nIs the reply right? Answer yes or no."
REPLIES = ["Restart the VPN client.", "I cannot help with that.", "Check the MTU on the gateway.", "No.",
           "Escalate to the network on-call.", "Reinstall the operating system."]


def _setup(tmp_path, tiny_model_dir, pairs: int = 24):
    data, artifacts = tmp_path / "data", tmp_path / "artifacts"
    (data / "governance").mkdir(parents=True)
    (data / "governance/judge_prompt.txt").write_text(PROMPT)
    spec = load_judge({"model": str(tiny_model_dir), "prompt": "governance/judge_prompt.txt", "min_pairs": 20},
                      "contract", data, sha256_file)
    c = contract.load_contract(DATA / "governance/eval_contract.yaml")
    tasks = {**c.tasks, "platform_qa": TaskSpec(metrics=[Judge(kind="judge", min=0.5)])}
    c = c.model_copy(update={"judge": spec, "statistics": Statistics(resamples=2000), "tasks": tasks})
    catalog, rng = Catalog(artifacts), random.Random(1)
    catalog.write_text("eval_contract", "contract", c.model_dump_json())
    test = [{"id": f"t{n:03d}", "messages": [{"role": "user", "content": f"Ticket {n}: the VPN drops."},
                                             {"role": "assistant", "content": "Check the MTU on the gateway."}],
             "meta": {"task": "platform_qa"}} for n in range(pairs)]
    catalog.write_records("frozen_test_set", "test", test)
    rows = [{"pair_id": f"pair-{n:03d}", "task": "platform_qa", "prompt": t["messages"][0]["content"],
             "reply_a": rng.choice(REPLIES), "reply_b": rng.choice(REPLIES), "preferred": None, "comment": "",
             "packet_id": "p1"} for n, t in enumerate(test, start=1)]
    key = {"packet_id": "p1", "tuned_model": "merged_model", "blind": True,
           "pairs": {r["pair_id"]: {"A": "merged_model", "B": "base_model", "item_id": f"t{n:03d}"}
                     for n, r in enumerate(rows)}}
    catalog.write_records("blind_review_packet", "packet", rows)
    catalog.write_json("blind_review_packet", "key", key)
    catalog.write_json("human_review", "review", {"status": "graded", "packet_id": "p1"})
    judge = judge_lib.LocalJudge(spec)  # what the judge itself prefers: synthetic reviewers agree or not
    scores = judge.scores([{"prompt": r["prompt"], "reply": r[s], "reference": "Check the MTU on the gateway."}
                           for r in rows for s in ("reply_a", "reply_b")])
    bar = sorted(scores)[len(scores) // 2]  # the judge metric's `min`: the median, so it passes some and fails some
    tasks = {**c.tasks, "platform_qa": TaskSpec(metrics=[Judge(kind="judge", min=bar)])}
    catalog.write_text("eval_contract", "contract", c.model_copy(update={"tasks": tasks}).model_dump_json())
    own = [judge_lib.preference(scores[2 * n], scores[2 * n + 1], bar) for n in range(len(rows))]
    return data, artifacts, rows, own


def _grade(data, rows, grades):
    path = graded_file(data / "reviews", "p1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({**r, "preferred": g}) + "\n" for r, g in zip(rows, grades)))


def _calibrate(data, artifacts) -> dict:
    result = dg.materialize([judge_calibration], resources={
        "store": ArtifactStore(data_dir=str(data), artifacts_dir=str(artifacts))})
    assert result.success
    return Catalog(artifacts).read_json("judge_calibration", "calibration")


def test_the_judge_is_calibrated_only_when_it_agrees_with_the_graded_review(tmp_path, tiny_model_dir):
    data, artifacts, rows, own = _setup(tmp_path, tiny_model_dir)
    assert {"A", "B"} <= set(own)
    _grade(data, rows, [{"A": "B", "B": "A"}.get(g, g) for g in own])  # reviewers who disagree with it
    disagrees = _calibrate(data, artifacts)
    assert disagrees["status"] == "uncalibrated" and disagrees["kappa"] < 0.6 and disagrees["n"] == len(rows)
    assert disagrees["judge"]["weights_sha256"] and len(disagrees["judge"]["prompt_sha256"]) == 64
    _grade(data, rows, own)  # reviewers who graded as the judge does
    agrees = _calibrate(data, artifacts)
    assert agrees["status"] == "calibrated" and agrees["kappa"] == 1.0, agrees
    _grade(data, rows[:10], own[:10])  # too few graded pairs to say anything
    assert "10 graded pairs, judge.min_pairs is 20" in _calibrate(data, artifacts)["why"]


def test_the_champion_is_the_instance_s_last_release_read_from_its_own_bundle_or_a_stated_error(tmp_path):
    from ftassets.defs.evaluation import champion
    from ftassets.lib.core.catalog import file_name
    from ftassets.lib.core.files import sha256_bytes
    from ftassets.lib.release.serving import bundle_files

    store = ArtifactStore(data_dir=str(tmp_path), artifacts_dir=str(tmp_path / "artifacts"))
    instance = dg.DagsterInstance.ephemeral()
    assert champion(store, instance) == (None, {"release_name": None, "reference": "base_model"})  # none released
    released = sha256_bytes(b"weights")
    for name, decision in (("rel-1", "release"), ("rel-2", "reject")):  # reported as runs do, newest last
        instance.report_runless_asset_event(dg.AssetMaterialization("release_decision", metadata={
            "decision": decision, "release_name": name, "merged_weights_sha256": released}))
    _, info = champion(store, instance)  # the reject after it is no champion; the release's bundle is missing
    assert info["release_name"] == "rel-1" and "serving bundle is missing" in info["error"]
    (store.artifact("serving_bundle") / file_name("serving_bundle", "model")).mkdir(parents=True)
    weights = store.path("serving_bundle", "model_weights")

    def bundle(content: bytes, name: str) -> None:  # as serving_bundle writes one: every file recorded
        weights.write_bytes(content)
        store.catalog.write_json("serving_bundle", "manifest", {"release_name": name, "run_id": "another-run"})
        store.path("serving_bundle", "files").unlink(missing_ok=True)
        store.catalog.write_json("serving_bundle", "files", bundle_files(store.artifact("serving_bundle")))
    bundle(b"other weights", "rel-0")  # a bundle of another model
    assert "the serving bundle holds rel-0 (weights" in champion(store, instance)[1]["error"]
    bundle(b"weights", "rel-1")  # the released weights, whichever run bundled them: kept as rel-1's version
    path, info = champion(store, instance)
    kept = store.catalog.releases() / released[:16]
    assert path == kept / file_name("serving_bundle", "model") and info["weights_sha256"] == released
    bundle(b"other weights", "rel-0")  # the bundle moves on; the kept version stays the champion
    assert champion(store, instance)[0] == kept / file_name("serving_bundle", "model")
    (kept / file_name("serving_bundle", "model_weights")).chmod(0o644)  # kept files are read-only
    (kept / file_name("serving_bundle", "model_weights")).write_bytes(b"tampered")
    assert "changed or missing: model/model.safetensors" in champion(store, instance)[1]["error"]
