"""`ftassets diff`: two release decisions' evidence, compared."""

import pytest

from ftassets.lib.curation import dedup
from ftassets.lib.release import history


def _record(rid, text, source="support_chat", task="triage"):
    return {"id": rid, "source": source, "meta": {"task": task},
            "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]}


def _evidence(name, created, train, outcomes, test, rules, sources, lr=1e-4, decision="release"):
    manifest = {"release_name": name, "created_at": created, "decision": decision, "rules": rules,
                "contract_version": "1", "data": {"sources": sources},
                "training": {"sft_adapter": {"config": {"learning_rate": lr}}}, "reproduce": {"git_commit": "abc"}}
    report = {"models": {"sft_adapter": {"items": [{"id": i, "scores": {"success": ok}} for i, ok in outcomes.items()]},
                         "base_model": {"items": [{"id": i, "scores": {"success": False}} for i in outcomes]}}}
    return history.build_evidence(manifest, report, {"train": train, "validation": []}, test, "sft_adapter",
                                  dedup.prompt_text, dedup.minhash)


WORDS = "reset the password for the staging database cluster after the failed rotation job".split()


@pytest.fixture
def two_releases(tmp_path):
    test = [_record("t1", "How do I reset the password for the staging database?"),
            _record("t2", "Summarize the outage report for the billing service."),
            _record("t3", "Which port does the metrics exporter listen on?")]
    old = [_record("a", "Where are the audit logs kept?"), _record("b", "Rotate the ingress certificate."),
           _record("c", "Explain the quota error on uploads.")]
    new = [old[0], _record("b", "Rotate the ingress certificate today."),  # changed content, same id
           _record("d", " ".join(WORDS), source="new_runbooks", task="runbook")]  # c removed, d added
    rule = {"rule": "task_success >= base + 0.05", "threshold": 0.05}
    a = _evidence("rel-a", "2026-12-01T10:00:00Z", old, {"t1": True, "t2": False, "t3": True}, test,
                  [{**rule, "value": 0.6, "passed": True}], {"support_chat": {"data_version": "v1"}})
    b = _evidence("rel-b", "2026-12-02T10:00:00Z", new, {"t1": False, "t2": True, "t3": True}, test,
                  [{**rule, "value": 0.4, "passed": False}],
                  {"support_chat": {"data_version": "v2"}, "new_runbooks": {"data_version": "n1"}}, lr=2e-4,
                  decision="reject")
    for evidence in (a, b):
        history.write_evidence(tmp_path, evidence)
    return tmp_path


def test_diff_names_every_change_between_two_releases(two_releases):
    a, b = history.resolve(two_releases, "previous"), history.resolve(two_releases, "latest")
    assert (a["release_name"], b["release_name"]) == ("rel-a", "rel-b")
    d = history.diff(a, b)
    assert d["sources"] == {"new_runbooks": {"from": None, "to": "n1"}, "support_chat": {"from": "v1", "to": "v2"}}
    train = d["examples"]["train"]
    assert train["support_chat / triage"]["removed"] == 1 and train["support_chat / triage"]["changed"] == 1
    assert train["support_chat / triage"]["ids"] == {"changed": ["b"], "removed": ["c"]}
    assert train["new_runbooks / runbook"]["added"] == 1
    assert d["settings"]["training.sft_adapter.learning_rate"] == {"from": 0.0001, "to": 0.0002}
    assert d["rules"][0]["from"] == 0.6 and d["rules"][0]["to"] == 0.4 and d["rules"][0]["passed"] == [True, False]
    flips = d["test_items"]
    assert flips["won"] == ["t2"] and [i["id"] for i in flips["lost"]] == ["t1"]
    # the lost item's nearest training example is the new runbook that copies most of its words
    assert flips["lost"][0]["nearest_training"][0]["id"] == "d"
    text = history.render(d)
    assert "lost t1; nearest training examples: d (new_runbooks" in text and "passed True -> False" in text


def test_unknown_release_names_list_the_recorded_ones(two_releases):
    with pytest.raises(LookupError, match="rel-a, rel-b"):
        history.resolve(two_releases, "rel-zzz")
