"""Checkpoints chosen on the declared task metric (tiny model, in process): the kept adapter is the
checkpoint where the validation task success peaked, early stopping follows it, and a falling gold
pass rate stops training with the reason."""

import json
import shutil
from pathlib import Path

import pytest
from transformers import TrainerCallback

from ftassets.lib.core import contract as contract_lib
from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.tasks import TaskSpec
from ftassets.lib.training import sft as train_sft
from ftassets.lib.training import task_eval
from ftassets.lib.training.settings import RecipeIO, SftSettings
from ftassets_tests import metric_functions
from ftassets_tests.conftest import DATA
from ftassets_tests.unit.test_lib_training_reliability import _write_split


def _contract(tmp_path: Path, **selection) -> str:
    contract = contract_lib.load_contract(DATA / "governance/eval_contract.yaml", DATA)
    task = TaskSpec.model_validate({"metrics": [{"kind": "python",
                                                 "function": "ftassets_tests.metric_functions:scripted"}]})
    contract = contract.model_copy(update={"tasks": {"incident_triage": task},
                                           "selection": contract_lib.Selection(**selection)})
    path = tmp_path / "eval_contract_artifact.json"
    path.write_text(json.dumps(contract.model_dump(mode="json")))
    return str(path)


class KeepAdapterAt(TrainerCallback):
    """Copies the adapter weights of the checkpoint saved at `step` (checkpoints are removed at the end)."""

    def __init__(self, step: int, into: Path):
        self.step, self.into = step, into

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            shutil.copy(Path(args.output_dir) / f"checkpoint-{self.step}" / file_name("sft_adapter", "adapter_weights"),
                        self.into)


def _run(tmp_path, tiny_model_dir, contract_file, callbacks=(), gold_file=None, **settings):
    io = RecipeIO(base_model=str(tiny_model_dir), train_file=_write_split(tmp_path / "train_rows.jsonl", 48),
                  validation_file=_write_split(tmp_path / "validation_rows.jsonl", 8, offset=100),
                  output_dir=str(tmp_path / "out"), contract_file=contract_file, gold_file=gold_file)
    values = dict(max_steps=12, eval_steps=2, micro_batch_size=2, learning_rate=1e-3, logging_steps=1,
                  early_stopping_patience=2, **settings)
    return train_sft.main(SftSettings(**values), io, report=lambda m: None, callbacks=callbacks)


def test_validation_sample_spreads_over_declared_tasks():
    records = [{"meta": {"task": t}, "messages": [{"role": "user", "content": str(n)}]}
               for n, t in enumerate(["a"] * 10 + ["b"] * 2 + ["c"] * 5)]
    sample = task_eval.validation_sample(records, {"a", "b"}, 6, seed=0)
    assert [r["meta"]["task"] for r in sample].count("b") == 2 and len(sample) == 6
    assert {r["meta"]["task"] for r in sample} == {"a", "b"}  # c is not declared
    assert sample == task_eval.validation_sample(records, {"a", "b"}, 6, seed=0)  # seeded


def test_the_kept_checkpoint_is_the_best_on_the_task_metric(tmp_path, tiny_model_dir):
    # task success per evaluation (steps 2, 4, 6, 8): peaks at step 4, then two without improvement
    metric_functions.SCRIPT.update(calls=0, per_eval=4, curve=[0, 1, 0, 0])
    best = tmp_path / "checkpoint_4_weights.safetensors"
    summary = _run(tmp_path, tiny_model_dir, _contract(tmp_path, metric="task_success", sample=4),
                   callbacks=[KeepAdapterAt(4, best)])
    assert summary["task_success_curve"] == [[2, 0.0], [4, 1.0], [6, 0.0], [8, 0.0]]
    assert summary["selected_on"] == "eval_task_success" and summary["best_step"] == 4
    assert summary["global_steps"] == 8 and summary["stop_reason"] == "early_stop"  # patience 2 on the task metric
    saved = Path(tmp_path / "out" / file_name("sft_adapter", "adapter_weights")).read_bytes()
    assert saved == best.read_bytes()  # the adapter written is checkpoint 4's, not the last one's
    assert summary["task_eval_items"] == 4 and summary["task_eval_seconds"] > 0


def test_a_falling_gold_pass_rate_stops_training_with_the_reason(tmp_path, tiny_model_dir, monkeypatch):
    gold = tmp_path / "gold_rows.jsonl"
    gold.write_text("".join(json.dumps({"id": f"g{i}", "task": "incident_triage", "rules": {"must_contain": ["x"]},
                                        "messages": [{"role": "user", "content": f"Incident {i}"}]}) + "\n"
                            for i in range(2)))
    rates = iter([True, True, True, False, False, False])  # 2 gold items: 1.0 at step 2, 0.5 at step 4
    monkeypatch.setattr(task_eval, "gold_item_passes", lambda rules, reply, schemas: (next(rates), []))
    metric_functions.SCRIPT.update(calls=0, per_eval=4, curve=[0, 1])  # the task peaks where gold falls
    summary = _run(tmp_path, tiny_model_dir, _contract(tmp_path, metric="task_success", sample=4, gold_stop=True),
                   gold_file=str(gold))
    assert summary["stop_reason"] == "gold_pass_rate_drop" and summary["global_steps"] == 4
    assert summary["gold_stop_reason"].startswith("gold pass rate fell from 1.0 at step 2 to 0.5 at step 4")
    assert summary["gold_pass_rate_curve"] == [[2, 1.0], [4, 0.5]]
    assert summary["task_success_curve"] == [[2, 0.0], [4, 1.0]]
    assert summary["best_step"] == 2  # the step where gold fell is never the one kept, however good its task score


def test_selection_needs_validation_items_of_a_declared_task(tmp_path, tiny_model_dir):
    contract = _contract(tmp_path, metric="task_success")
    data = json.loads(Path(contract).read_text())
    data["tasks"] = {"other_task": data["tasks"]["incident_triage"]}
    Path(contract).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"selection.metric=task_success: the validation split has no item of a "
                                         r"declared task \(declared: \['other_task'\]\)"):
        _run(tmp_path, tiny_model_dir, contract)
