import math
import subprocess
import sys

import pytest
from transformers import TrainerControl, TrainerState

from ftassets.lib.training.callbacks import DivergenceGuard
from ftassets.lib.training.host import resolve_precision


def _feed(guard, losses):
    state, control = TrainerState(), TrainerControl()
    for step, loss in enumerate(losses, start=1):
        state.global_step = step * 5
        guard.on_log(None, state, control, logs={"loss": loss})
        if control.should_training_stop:
            return step
    return None


def test_divergence_guard_stops_on_nan_and_spikes_only():
    assert _feed(DivergenceGuard(), [2.0, 1.5, math.nan]) == 3
    assert _feed(DivergenceGuard(), [1.0, 1.1, 0.9, 1.0, 50.0]) == 5
    # Length-grouped batches: short answers near 0.3, long summaries near 2.5 -- not a divergence.
    assert _feed(DivergenceGuard(), [2.3, 1.6, 0.29, 2.47, 0.4, 1.9, 0.3, 2.2]) is None
    # A real run (SmolLM2-135M, 60 steps): five JSON-answer logs in a row, then a summary batch.
    real = [1.558, 0.663, 1.772, 0.412, 0.190, 1.348, 0.198, 0.151, 0.146, 0.140, 0.146, 1.948]
    assert _feed(DivergenceGuard(), real) is None
    # A loss that climbs far above where the run started is stopped even after a calm stretch.
    assert _feed(DivergenceGuard(), real + [9.5]) == len(real) + 1
    # Up-weighted short tasks, then the first summary batch (a real 96-step run that the spike rule
    # alone stopped at step 35): hard, not diverged.
    assert _feed(DivergenceGuard(), [0.832, 0.5043, 0.3345, 0.1541, 0.1171, 0.7764, 2.923]) is None


def test_precision_resolution():
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("auto") in ("bf16", "fp16", "fp32")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8")


def test_auto_precision_on_cpu_follows_the_measured_matmul_speed(monkeypatch):
    from ftassets.lib.training import host as recipe_common

    monkeypatch.setattr(recipe_common.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(recipe_common, "_measured", {"fp32": 330.0, "bf16": 180.0})  # this project's Xeon
    assert resolve_precision("auto") == "fp32"
    monkeypatch.setattr(recipe_common, "_measured", {"fp32": 82.0, "bf16": 298.0})  # a 2-core AMD machine
    assert resolve_precision("auto") == "bf16"
    monkeypatch.setattr(recipe_common, "_measured", {"fp32": 100.0, "bf16": 110.0})  # not a clear win: casts cost
    assert resolve_precision("auto") == "fp32"
    monkeypatch.setattr(recipe_common, "_measured", {})
    speed = recipe_common.cpu_matmul_gflops(repeats=2)  # a real measurement, cached
    assert speed["fp32"] > 0 and speed["bf16"] > 0 and recipe_common.cpu_matmul_gflops() == speed


MMAPPED_AFTER_BIG_TENSOR = r"""
import ctypes, sys, torch
from ftassets.lib.training.host import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
changed = keep_freed_memory() if sys.argv[1] == "on" else False
x = torch.empty(100 << 20, dtype=torch.uint8)
print(changed, libc.mallinfo2().hblkhd >> 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc setting: Linux only")
def test_keep_freed_memory_serves_big_tensors_from_the_heap():
    """glibc's default maps a 100 MiB tensor with its own mmap (unmapped again on free, re-faulted by
    the next step); with the setting it comes from the heap and stays there for reuse."""
    def run(mode):
        out = subprocess.run([sys.executable, "-c", MMAPPED_AFTER_BIG_TENSOR, mode], capture_output=True, text=True,
                             check=True).stdout.split()
        return out[0], int(out[1])

    changed, mapped_mib = run("off")
    assert changed == "False" and mapped_mib >= 100
    changed, mapped_mib = run("on")
    assert changed == "True" and mapped_mib < 10


def test_task_weights_scale_a_tasks_share_and_reject_bad_specs():
    import pytest

    from ftassets.lib.training.settings import RecipeConfigError, SftSettings, parse_args
    from ftassets.lib.training.sft import weighted

    paths = ["--base-model", "b", "--train-file", "t", "--output-dir", "o"]
    _, settings = parse_args(SftSettings, "", paths + ["--task-weights", "incident_triage=2, ticket_summary=0.5"])
    assert settings.task_weights == {"incident_triage": 2.0, "ticket_summary": 0.5}
    assert parse_args(SftSettings, "", paths)[1].task_weights == {}
    for bad in ({"": 2.0}, {"qa": -1.0}):
        with pytest.raises(RecipeConfigError, match="task_weights"):
            SftSettings(task_weights=bad)
    with pytest.raises(SystemExit):  # argparse: "task_weights: expected task=weight"
        parse_args(SftSettings, "", paths + ["--task-weights", "incident_triage"])
    records = [{"id": f"t{i}", "meta": {"task": "triage"}} for i in range(100)] + \
              [{"id": f"s{i}", "meta": {"task": "summary"}} for i in range(100)] + [{"id": "x", "meta": {}}]
    out = weighted(records, {"triage": 2, "summary": 0.5}, seed=1)
    counts = {task: sum(r.get("meta", {}).get("task") == task for r in out) for task in ("triage", "summary")}
    assert counts["triage"] == 200 and 35 <= counts["summary"] <= 65 and out.count(records[-1]) == 1
    assert weighted(records, {"triage": 2, "summary": 0.5}, seed=1) == out  # seeded: same mixture every run
    assert weighted(records, {}, seed=1) == records


def test_divergence_stops_without_checkpointing_the_diverged_weights(tmp_path):
    from ftassets.lib.training.checkpoints import divergence_message

    guard, state, control = DivergenceGuard(), TrainerState(), TrainerControl()
    control.should_save = control.should_evaluate = True  # this step was due for a checkpoint
    guard.on_log(None, state, control, logs={"loss": math.inf})
    assert control.should_training_stop and not control.should_save and not control.should_evaluate
    for step in (10, 20):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}/trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-30").mkdir()  # cut off mid-write: no trainer_state.json
    message = divergence_message("non-finite training loss inf at step 33", tmp_path)
    assert message.endswith(f"is kept at {tmp_path / 'checkpoint-20'}") and "no adapter was written" in message


def test_template_audit_accepts_exactly_the_assistant_turn(tiny_tokenizer):
    from ftassets.lib.training.template_audit import audit_example

    prompt = [{"role": "system", "content": "You are the Nimbus support assistant."},
              {"role": "user", "content": "Which port does the metrics agent use?"}]
    completion = [{"role": "assistant", "content": "Port 9102."}]
    ids = tiny_tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
    prompt_len = len(tiny_tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                                        return_dict=True)["input_ids"])
    labels = lambda start: [-100] * start + ids[start:]  # noqa: E731
    right = audit_example(tiny_tokenizer, prompt, completion, ids, labels(prompt_len))
    assert right["round_trip"] and right["mask_exact"] and right["trained_tokens"] == len(ids) - prompt_len
    header_leaks = audit_example(tiny_tokenizer, prompt, completion, ids, labels(prompt_len - 1))
    answer_cut = audit_example(tiny_tokenizer, prompt, completion, ids, labels(prompt_len + 1))
    truncated = audit_example(tiny_tokenizer, prompt, completion, ids[:-2], labels(prompt_len)[:-2])
    assert not header_leaks["mask_exact"] and not answer_cut["mask_exact"]
    assert not truncated["round_trip"] and not truncated["mask_exact"]


def test_template_audit_spreads_over_the_split_and_says_what_failed(tiny_tokenizer):
    from ftassets.lib.training.template_audit import audit

    def example(i):
        prompt = [{"role": "user", "content": f"Question number {i}?"}]
        completion = [{"role": "assistant", "content": f"Answer {i}."}]
        ids = tiny_tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
        start = len(tiny_tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                                       return_dict=True)["input_ids"])
        cut = 1 if i >= 90 else 0  # the last rows (one source, say) were truncated by the trainer
        return ({"prompt": prompt, "completion": completion},
                {"input_ids": ids[:len(ids) - cut], "labels": ([-100] * start + ids[start:])[:len(ids) - cut]})

    rows = [example(i) for i in range(100)]
    result = audit(tiny_tokenizer, [r[0] for r in rows], [r[1] for r in rows], limit=16)
    assert result["audited"] == 16 and result["first_failure_row"] == 92  # the first 16 rows alone all pass
    assert result["round_trip_ok"] == result["mask_exact_ok"] == 14
    assert result["explanation"].startswith("2 of 16 audited examples do not decode back")
    assert "first: row 92" in result["explanation"]


def test_an_example_longer_than_max_length_stops_training_with_what_to_change(tiny_tokenizer):
    from ftassets.lib.training.checks import check_lengths
    from ftassets.lib.training.settings import RecipeConfigError

    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    long = [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]
    check_lengths(tiny_tokenizer, [short, long], 1024, "training examples")  # fits: nothing raised
    with pytest.raises(RecipeConfigError) as info:
        check_lengths(tiny_tokenizer, [short, long, long], 64, "training examples")
    message = str(info.value)
    assert message.startswith("max_length=64: 2 of 3 training examples are longer (longest ")
    assert "set `max_tokens: 64` in the data folder's governance/curation.yaml" in message


def test_scoring_only_labelled_positions_gives_the_same_per_token_log_probs(tiny_model_dir, monkeypatch):
    """The CPU compaction of trl's fused LM head changes which positions are projected, not the
    result: per-token log-probs, entropy, top-1 hits and the loss equal the every-position path."""
    import torch
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from ftassets.lib.training.host import score_labelled_positions_only

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    torch.manual_seed(0)
    ids = torch.randint(5, 500, (3, 12))
    attention = torch.ones_like(ids)
    attention[2, 9:] = 0  # a padded row
    labels = ids.clone()
    labels[:, :5] = -100  # prompt
    labels[2, 9:] = -100
    with torch.no_grad():
        every = model(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True)
        monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)  # restored after the test
        assert score_labelled_positions_only() and score_labelled_positions_only()  # idempotent
        assert trl_utils._use_triton(torch.device("cpu"))
        labelled = model(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True)
    assert int(every.label_mask.sum()) == 7 + 7 + 4  # next-token labels at positions 5..11 (row 2: 5..8)
    for field in ("log_probs", "entropy", "is_top1"):
        torch.testing.assert_close(getattr(labelled, field), getattr(every, field), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(labelled.loss, every.loss)
    assert float(every.log_probs[0, 0]) == 0.0 and float(labelled.log_probs[0, 0]) == 0.0  # prompt: unscored
