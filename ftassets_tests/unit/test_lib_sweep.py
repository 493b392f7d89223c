"""The sweep declaration and the choice (lib/training/sweep.py), without training."""

import pytest
import yaml

from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.training.sweep import SweepIncomplete, adapter_uses_choice, choose, load_plan, run_config


def _plan(tmp_path, body):
    (tmp_path / "governance").mkdir(exist_ok=True)
    (tmp_path / "governance" / "sweep.yaml").write_text(yaml.safe_dump(body) if isinstance(body, dict) else body)
    return load_plan(tmp_path)


def test_grid_is_every_combination_in_declared_order_with_weights_set_per_task(tmp_path):
    plan = _plan(tmp_path, {"base": {"max_steps": 10, "task_weights": {"a": 3}},
                            "grid": {"learning_rate": [0.001, 0.002], "task_weights.replay": [0, 0.5]}})
    trials = plan.trials()
    assert [t.key for t in trials] == [
        "learning_rate=0.001,task_weights.replay=0", "learning_rate=0.001,task_weights.replay=0.5",
        "learning_rate=0.002,task_weights.replay=0", "learning_rate=0.002,task_weights.replay=0.5"]
    assert trials[1].settings["task_weights"] == {"a": 3, "replay": 0.5} and trials[1].settings["max_steps"] == 10
    assert trials[2].settings["learning_rate"] == 0.002
    assert len({t.folder for t in trials}) == 4 and all("/" not in t.folder for t in trials)
    assert plan.base["task_weights"] == {"a": 3}  # the declaration itself is not changed by applying a point


@pytest.mark.parametrize("body, message", [
    ({"grid": {"learning_rte": [1]}}, "grid.learning_rte: not an SFT setting that a sweep can vary"),
    ({"grid": {"resume": [True, False]}}, "grid.resume: not an SFT setting"),
    ({"grid": {"learning_rate": []}}, "grid.learning_rate: give a non-empty list of values"),
    ({"grid": {"learning_rate": [0.1, 0.1]}}, "grid.learning_rate: a value is listed twice"),
    ({"grid": {}}, "grid: declare at least one setting to vary"),
    ({"grid": {"task_weights.": [1]}}, "grid.task_weights.: name the task"),
    ({"grid": {"seed": list(range(65))}}, "grid: 65 trials (every combination); at most 64"),
    ({"base": {"lora_r": 0}, "grid": {"seed": [1]}}, "base.lora_r=0: must be an integer >= 1"),
    ({"grid": {"learning_rate": [0.001, -1]}}, "trial learning_rate=-1: learning_rate=-1: must be > 0"),
    ({"grid": {"task_weights.replay": [1, -2]}}, "trial task_weights.replay=-2: task_weights="),
    ({"grid": {"seed": [1]}, "seeds": 2}, "seeds: Extra inputs are not permitted"),
    ("grid: [unclosed", "invalid YAML"),
])
def test_bad_declaration_names_the_file_and_the_key(tmp_path, body, message):
    with pytest.raises(GovernanceError) as info:
        _plan(tmp_path, body)
    assert "governance/sweep.yaml" in str(info.value) and message in str(info.value)


def test_missing_declaration_says_what_to_write(tmp_path):
    with pytest.raises(GovernanceError, match="no sweep declared .*governance/sweep.yaml"):
        load_plan(tmp_path)


def _records(plan, scores, metric="task_success"):
    return {t.key: {"score": {"metric": metric, "value": value, "step": 50, "validation_loss": loss},
                    "fingerprint": {"settings": t.settings, "inputs": {"train_file": "abc"}}, "wall_time_s": 1.0}
            for t, (value, loss) in zip(plan.trials(), scores)}


def _current(plan, inputs=None):
    return {t.key: {"settings": t.settings, "inputs": inputs or {"train_file": "abc"}} for t in plan.trials()}


def test_choice_is_the_best_validation_score_then_the_lower_loss(tmp_path):
    plan = _plan(tmp_path, {"grid": {"learning_rate": [0.001, 0.002, 0.003]}})
    result = choose(plan.trials(), _records(plan, [(0.5, 0.40), (0.7, 0.50), (0.7, 0.45)]), _current(plan))
    assert result["chosen"] == "learning_rate=0.003" and result["chosen_score"] == 0.7
    assert [row["score"] for row in result["grid"]] == [0.5, 0.7, 0.7] and result["higher_is_better"]
    chosen = run_config(result)["ops"]["sft_adapter"]["config"]
    assert chosen["learning_rate"] == 0.003 and chosen == {k: v for k, v in result["chosen_settings"].items()
                                                           if k != "resume"}
    assert adapter_uses_choice(result, {**result["chosen_settings"], "resume": False, "output_dir": "x"})
    assert not adapter_uses_choice(result, {**result["chosen_settings"], "learning_rate": 0.002})
    on_loss = choose(plan.trials(), _records(plan, [(0.40, 0.40), (0.30, 0.30), (0.35, 0.35)], "loss"), _current(plan))
    assert on_loss["chosen"] == "learning_rate=0.002" and not on_loss["higher_is_better"]


def test_no_choice_among_missing_or_stale_trials(tmp_path):
    plan = _plan(tmp_path, {"grid": {"learning_rate": [0.001, 0.002, 0.003]}})
    records = _records(plan, [(0.5, 0.4), (0.7, 0.5), (0.1, 0.1)])
    records["learning_rate=0.003"] = None
    current = _current(plan)
    current["learning_rate=0.001"] = {**current["learning_rate=0.001"], "inputs": {"train_file": "new"}}
    with pytest.raises(SweepIncomplete) as info:
        choose(plan.trials(), records, current)
    assert str(info.value) == ("sweep incomplete: never trained: learning_rate=0.003; trained on other inputs or "
                               "settings (re-run): learning_rate=0.001 (materialize these sft_trial partitions, "
                               "or run `ftassets sweep`)")
