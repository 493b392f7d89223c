"""The judge metric: a pinned prompt and identity, a local judge's P(yes), an endpoint judge over loopback,
and the calibration that decides whether its verdicts may gate a release."""

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ftassets.lib.core import contract
from ftassets.lib.core.contract import Champion, Statistics, load_judge
from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import sha256_file
from ftassets.lib.core.models import weights_sha256
from ftassets.lib.core.tasks import Judge, TaskSpec
from ftassets.lib.evaluation import judge as judge_lib
from ftassets.lib.release.gate import evaluate_gate
from ftassets_tests.conftest import DATA

PROMPT = ("Question: {prompt}\nReference answer: {reference}\nReply: {reply}\n"
          "Does the reply answer the question as well as the reference? Answer yes or no.")


def _spec(tmp_path, **raw):
    (tmp_path / "judge_prompt.txt").write_text(PROMPT)
    return load_judge({"prompt": "judge_prompt.txt", **raw}, "contract.yaml", tmp_path, sha256_file)


def test_the_judge_section_pins_prompt_and_identity_and_is_checked(tmp_path, tiny_model_dir):
    spec = _spec(tmp_path, model=str(tiny_model_dir))
    assert spec.identity == {"kind": "local", "path": str(tiny_model_dir), "weights_sha256": weights_sha256(tiny_model_dir)}
    assert spec.prompt_sha256 == sha256_file(tmp_path / "judge_prompt.txt") and spec.prompt_template == PROMPT
    with pytest.raises(GovernanceError, match="exactly one of model"):
        _spec(tmp_path, model=str(tiny_model_dir), endpoint={"url": "http://127.0.0.1:9/v1", "model": "m"})
    with pytest.raises(GovernanceError, match="judge.model: .*no \\*.safetensors"):
        _spec(tmp_path, model=str(tmp_path))
    (tmp_path / "bad.txt").write_text("Reply: {reply}")
    with pytest.raises(GovernanceError, match="lacks {prompt}"):
        load_judge({"prompt": "bad.txt", "model": str(tiny_model_dir)}, "c.yaml", tmp_path, sha256_file)
    with pytest.raises(GovernanceError, match="judge.endpoint.api_key_env"):
        _spec(tmp_path, endpoint={"url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "sk-not-a-name!"})
    text = (DATA / "governance/eval_contract.yaml").read_text().replace(
        "metrics: [{kind: refusal, expected: true}]", "metrics: [{kind: judge}]")
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(GovernanceError, match="tasks policy_refusal use a judge metric but the contract declares no judge"):
        contract.load_contract(tmp_path / "c.yaml", DATA)


def test_a_local_judge_gives_a_deterministic_probability_of_yes(tmp_path, tiny_model_dir):
    rows = [{"prompt": f"What is {n} + {n}?", "reply": str(2 * n) if n % 2 else "no idea", "reference": str(2 * n)}
            for n in range(10)]
    one = judge_lib.LocalJudge(_spec(tmp_path, model=str(tiny_model_dir), batch_size=1)).scores(rows)
    batched = judge_lib.LocalJudge(_spec(tmp_path, model=str(tiny_model_dir), batch_size=8)).scores(rows)
    assert all(0.0 <= p <= 1.0 for p in one) and len(set(one)) > 1
    assert batched == pytest.approx(one, abs=1e-4)  # left padding changes nothing


class _Endpoint(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Endpoint.seen.append({"auth": self.headers.get("Authorization"), "body": body})
        text = body["messages"][0]["content"]
        answer = "Yes." if "GOOD" in text else "no" if "BAD" in text else "perhaps"
        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_an_endpoint_judge_reads_the_first_word_over_loopback(tmp_path, monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("JUDGE_KEY", "secret-123")
        spec = _spec(tmp_path, endpoint={"url": f"http://127.0.0.1:{server.server_port}/v1", "model": "judge-1",
                                         "api_key_env": "JUDGE_KEY"})
        judge = judge_lib.make_judge(spec)
        scores = judge.scores([{"prompt": "q", "reply": r} for r in ("GOOD", "BAD", "meh")])
    finally:
        server.shutdown()
    assert scores == [1.0, 0.0, None] and "neither yes nor no" in judge.errors[0]
    assert {s["auth"] for s in _Endpoint.seen} == {"Bearer secret-123"}
    assert _Endpoint.seen[0]["body"]["temperature"] == 0 and _Endpoint.seen[0]["body"]["model"] == "judge-1"
    assert spec.identity == {"kind": "endpoint", "url": f"http://127.0.0.1:{server.server_port}/v1", "model": "judge-1"}
    assert "secret-123" not in json.dumps(spec.model_dump())  # the key is read at call time, never stored


def test_calibration_on_synthetic_grades_agrees_or_not(tmp_path, tiny_model_dir):
    spec = _spec(tmp_path, model=str(tiny_model_dir), min_pairs=20)
    judge = judge_lib.LocalJudge(spec)
    rng = random.Random(0)
    pairs = [{"pair_id": f"pair-{n:03d}", "task": "qa", "prompt": f"Ticket {n}: the VPN drops every {n} minutes.",
              "reply_a": rng.choice(["Restart the client.", "I cannot help.", "Check the MTU and the gateway."]),
              "reply_b": rng.choice(["Reinstall it.", "Escalate to network on-call.", "No."]), "reference": "MTU"}
             for n in range(30)]
    scores = judge.scores([{"prompt": p["prompt"], "reply": p[s], "reference": "MTU"} for p in pairs
                           for s in ("reply_a", "reply_b")])
    bars = {"qa": sorted(scores)[len(scores) // 2]}  # the task's judge `min`: here the median, so it splits
    own = {p["pair_id"]: judge_lib.preference(scores[2 * n], scores[2 * n + 1], bars["qa"]) for n, p in enumerate(pairs)}
    assert {"A", "B"} <= set(own.values())  # the judge passes A over B on some pairs and B over A on others
    statistics = Statistics(resamples=2000)
    agrees = judge_lib.calibration(judge, spec, statistics, pairs, own, bars)  # people who graded as it did
    assert agrees["status"] == "calibrated" and agrees["kappa"] == 1.0 and agrees["n"] == 30
    flipped = {k: {"A": "B", "B": "A"}.get(v, v) for k, v in own.items()}
    disagrees = judge_lib.calibration(judge, spec, statistics, pairs, flipped, bars)
    assert disagrees["status"] == "uncalibrated" and disagrees["kappa"] < 0.6 and "does not reach the bar 0.6" in disagrees["why"]
    few = judge_lib.calibration(judge, spec, statistics, pairs[:10], own, bars)
    assert few["status"] == "uncalibrated" and "fewer than judge.min_pairs 20" in few["why"]
    # a judge that passes every reply calls every pair a tie: no agreement with people who preferred one
    lenient = judge_lib.calibration(judge, spec, statistics, pairs, own, {"qa": 0.0})
    assert lenient["status"] == "uncalibrated" and lenient["confusion"]["A->tie"] > 0
    assert judge_lib.calibration(judge, spec, statistics, pairs, own, {"other": 0.5})["n"] == 0  # only judged tasks


def _judged_report(judge_says_yes: bool):
    def model(success):
        return {"items": [{"id": f"t{i:03d}", "task": "platform_qa", "scores": {"success": success}} for i in range(60)]}
    return {"models": {"base_model": model(False), "merged_model": model(judge_says_yes)}}


def test_an_uncalibrated_judge_can_neither_pass_nor_block_and_a_calibrated_one_decides(tmp_path, tiny_model_dir):
    c = contract.load_contract(DATA / "governance/eval_contract.yaml").model_copy(update={
        "tasks": {"platform_qa": TaskSpec(metrics=[Judge(kind="judge")])}, "thresholds": {"task_success_min": 0.5},
        "release_rule": "thresholds_only", "champion": Champion(), "statistics": Statistics(resamples=2000),
        "judge": _spec(tmp_path, model=str(tiny_model_dir))})
    of = c.judge.calibrated_as()
    uncalibrated = {"status": "uncalibrated", "why": "kappa 0.2 [-0.1, 0.5] does not reach the bar 0.6 on 32 pairs",
                    "judge": of}
    for says in (True, False):  # whatever the judge said, the rule that reads it fails for the same reason
        gate = evaluate_gate(c, _judged_report(says), None, uncalibrated)
        assert gate["decision"] == "reject" and "judge uncalibrated (kappa 0.2" in gate["reasons"][0]
    calibrated = {"status": "calibrated", "why": "kappa 0.8 [0.65, 0.95] reaches the bar 0.6 on 32 pairs", "judge": of}
    assert evaluate_gate(c, _judged_report(True), None, calibrated)["decision"] == "release"
    assert evaluate_gate(c, _judged_report(False), None, calibrated)["decision"] == "reject"
    # a calibration of another judge (or prompt, or bar) unlocks nothing
    other = {**calibrated, "judge": {**of, "prompt_sha256": "0" * 64}}
    assert "calibration is of another judge" in evaluate_gate(c, _judged_report(True), None, other)["reasons"][0]
    # a reply the judge gave no verdict on fails the judged rules, whichever model it was
    silent = _judged_report(True)
    silent["models"]["base_model"]["judge_missing"] = 3
    assert "no verdict on 3 replies of base_model" in evaluate_gate(c, silent, None, calibrated)["reasons"][0]
    # a contract without judged tasks never asks for a calibration
    plain = c.model_copy(update={"tasks": {"platform_qa": TaskSpec(metrics=[{"kind": "exact_match"}])}})
    assert evaluate_gate(plain, _judged_report(True), None, None)["decision"] == "release"
