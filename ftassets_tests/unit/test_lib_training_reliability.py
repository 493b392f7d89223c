"""Training reliability on the tiny model: bad settings fail before training with the field named,
a run killed with SIGKILL resumes to the same adapter, and the same inputs + seed give the same
adapter bytes."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftassets.lib.core.catalog import CHECKPOINT_FINGERPRINT, file_name
from ftassets.lib.training import sft as train_sft
from ftassets.lib.training.settings import DpoSettings, RecipeConfigError, RecipeIO, SftSettings
from ftassets_tests.conftest import REPO

TRIAGE = ('Triage this incident. Reply with JSON only, with the keys "severity" (a number: the higher, the more '
          'urgent), "component" (database, auth, network, storage, billing or ci) and "needs_oncall" (true or false).')


def _write_split(path: Path, n: int, offset: int = 0) -> str:
    rows = []
    for i in range(offset, offset + n):
        user = f"{TRIAGE}\nIncident {i}: the {['auth', 'ci', 'billing'][i % 3]} service fails for {i % 7 + 1} teams."
        answer = json.dumps({"severity": i % 4 + 1, "component": ["auth", "ci", "billing"][i % 3],
                             "needs_oncall": i % 2 == 0})
        rows.append({"id": f"r{i}", "meta": {"task": "incident_triage"}, "messages": [
            {"role": "system", "content": "You are the Nimbus platform support assistant."},
            {"role": "user", "content": user}, {"role": "assistant", "content": answer}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def recipe_cfg(tmp_path, tiny_model_dir):
    def make(**overrides):
        io = dict(base_model=str(tiny_model_dir), train_file=_write_split(tmp_path / "train_rows.jsonl", 48),
                  validation_file=_write_split(tmp_path / "validation_rows.jsonl", 8, offset=100),
                  output_dir=str(tmp_path / "out"))
        settings = dict(max_steps=24, eval_steps=3, micro_batch_size=2, learning_rate=1e-3, logging_steps=1)
        io.update({k: v for k, v in overrides.items() if k in RecipeIO.model_fields})
        settings.update({k: v for k, v in overrides.items() if k not in RecipeIO.model_fields})
        return Recipe(RecipeIO(**io), SftSettings(**settings))
    return make


class Recipe:
    """One SFT run's paths and settings, as the tests hand them to the recipe."""

    def __init__(self, io: RecipeIO, settings: SftSettings):
        self.io, self.settings, self.output_dir = io, settings, io.output_dir

    def main(self):
        return train_sft.main(self.settings, self.io, report=lambda m: None)


@pytest.mark.parametrize("field, value, expected", [
    ("lora_r", 0, "lora_r=0: must be an integer >= 1"),
    ("learning_rate", 0.0, "learning_rate=0.0: must be > 0"),
    ("learning_rate", -1e-4, "learning_rate=-0.0001: must be > 0"),
    ("lora_dropout", 1.0, "lora_dropout=1.0: must be in [0, 1)"),
    ("warmup_ratio", 3.0, "warmup_ratio=3.0: must be in [0, 1)"),
    ("max_steps", 0, "max_steps=0: must be -1"),
    ("precision", "int8", "precision='int8': must be auto"),
    ("lr_scheduler", "cosinus", "lr_scheduler='cosinus': must be one of"),
    ("task_weights", {"triage": -1}, "task_weights={'triage': -1.0}: each task needs a name and a weight >= 0"),
    ("lora_rank", 8, "lora_rank=8: no such setting"),
    ("micro_batch_size", 0, "micro_batch_size=0"),
    ("lora_top_layers", -1, "lora_top_layers=-1: must be an integer >= 0"),
])
def test_bad_settings_fail_naming_the_field(field, value, expected):
    with pytest.raises(RecipeConfigError) as error:
        SftSettings(**{field: value})
    assert str(error.value).startswith(expected)


def test_dpo_settings_are_checked_too():
    with pytest.raises(RecipeConfigError, match=r"^beta=0.0: must be > 0"):
        DpoSettings(beta=0.0)
    assert DpoSettings().learning_rate == 5e-5 and SftSettings().learning_rate == 2e-4  # each its own defaults


@pytest.mark.parametrize("overrides, expected", [
    ({"max_length": 4096}, "max_length=4096: above the base model's context window of 2048 tokens"),
    ({"target_modules": "q_proj,attn_out"}, "target_modules='q_proj,attn_out': no linear layer named attn_out"),
    ({"packing": True}, "packing=True: padding-free packing needs CUDA and the flash-attn package"),
    ({"lora_top_layers": 3}, "lora_top_layers=3: the base model has 2 decoder layers"),
])
def test_model_dependent_settings_fail_before_training(recipe_cfg, overrides, expected):
    cfg = recipe_cfg(**overrides)
    with pytest.raises(RecipeConfigError) as error:
        cfg.main()
    assert str(error.value).startswith(expected)
    assert not Path(cfg.output_dir, "checkpoints").exists()  # nothing started


def test_top_layer_lora_trains_only_the_last_layers(recipe_cfg):
    """lora_top_layers=1 on the 2-layer tiny model: adapters in layer 1 only, so layer 0 gets none."""
    cfg = recipe_cfg(lora_top_layers=1, max_steps=2, eval_steps=2)
    summary = cfg.main()
    config = json.loads(Path(cfg.output_dir, file_name("sft_adapter", "adapter_config")).read_text())
    assert config["layers_to_transform"] == [1]
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    from safetensors import safe_open

    with safe_open(str(Path(cfg.output_dir, file_name("sft_adapter", "adapter_weights"))), "pt") as weights:
        layers = {name.split(".layers.")[1].split(".")[0] for name in weights.keys()}
    assert layers == {"1"} and summary["global_steps"] == 2


def _recipe_command(cfg) -> list[str]:
    """The recipe's command line for a run: every path and setting as a flag."""
    args = [sys.executable, "-m", "ftassets.lib.training.sft"]
    for name, value in {**cfg.io.model_dump(), **cfg.settings.model_dump()}.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, dict):
            args += [flag, ",".join(f"{k}={v}" for k, v in value.items())] if value else []
        elif value not in (None, ""):
            args += [flag, str(value)]
    return args


def _run(cfg) -> bytes:
    subprocess.run(_recipe_command(cfg), check=True, capture_output=True, timeout=600)
    return Path(cfg.output_dir, file_name("sft_adapter", "adapter_weights")).read_bytes()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_adapter_and_runs_are_reproducible(recipe_cfg, tmp_path):
    first = _run(recipe_cfg(output_dir=str(tmp_path / "a")))
    second = _run(recipe_cfg(output_dir=str(tmp_path / "b")))
    assert first == second  # same inputs, settings and seed: the same adapter bytes on CPU

    checkpoints = tmp_path / "checkpoints"
    killed = recipe_cfg(output_dir=str(tmp_path / "c"), checkpoint_dir=str(checkpoints))
    process = subprocess.Popen(_recipe_command(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (checkpoints / "checkpoint-6" / "trainer_state.json").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint-6 within 300 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not Path(killed.output_dir, file_name("sft_adapter", "adapter_weights")).exists()

    resumed = _run(killed)
    summary = json.loads(Path(killed.output_dir, file_name("sft_adapter", "summary")).read_text())
    assert summary["resumed_at_step"] >= 6 and summary["global_steps"] == 24
    assert resumed == first  # byte-identical to the uninterrupted run
    assert not checkpoints.exists()  # finished: checkpoints removed


def test_checkpoints_of_a_different_run_are_not_resumed(tmp_path):
    from ftassets.lib.training.checkpoints import resume_point

    events = []
    (tmp_path / "ck" / "checkpoint-4").mkdir(parents=True)
    (tmp_path / "ck" / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (tmp_path / "ck" / CHECKPOINT_FINGERPRINT).write_text(json.dumps({"settings": {"lr": 1}, "inputs": {"train": "x"}}))
    same = {"settings": {"lr": 1}, "inputs": {"train": "x"}}
    assert resume_point(tmp_path / "ck", same, True, events.append) == str(tmp_path / "ck" / "checkpoint-4")
    changed_data = {"settings": {"lr": 1}, "inputs": {"train": "y"}}
    assert resume_point(tmp_path / "ck", changed_data, True, events.append) is None
    assert events[-1]["reason"] == "different settings or inputs"
    assert not (tmp_path / "ck" / "checkpoint-4").exists()
    assert json.loads((tmp_path / "ck" / CHECKPOINT_FINGERPRINT).read_text()) == changed_data


@pytest.mark.slow
def test_the_same_recipe_runs_data_parallel_under_accelerate(recipe_cfg, tmp_path):
    """Two CPU processes (gloo) through `accelerate launch`, unchanged recipe: the steps are shared
    out (each process takes half of every global batch), rank 0 alone writes the adapter."""
    config = REPO / "ftassets/launch_configs/cpu_2proc.yaml"
    cfg = recipe_cfg(output_dir=str(tmp_path / "ddp"), max_steps=6, eval_steps=3)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)] + \
        _recipe_command(cfg)[1:]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(Path(cfg.output_dir, file_name("sft_adapter", "summary")).read_text())
    assert summary["processes"] == 2 and summary["global_steps"] == 6
    assert Path(cfg.output_dir, file_name("sft_adapter", "adapter_weights")).is_file()
    # Two ranks each see micro_batch_size examples per step: twice the tokens of one process.
    single = recipe_cfg(output_dir=str(tmp_path / "single"), max_steps=6, eval_steps=3)
    _run(single)
    alone = json.loads(Path(single.output_dir, file_name("sft_adapter", "summary")).read_text())
    assert alone["processes"] == 1 and summary["tokens_seen"] > 1.5 * alone["tokens_seen"]


def test_qlora_trains_on_cpu_over_an_nf4_base(recipe_cfg):
    import torch
    from safetensors.torch import load_file

    cfg = recipe_cfg(qlora=True, max_steps=2, eval_steps=2, validation_file=None)
    summary = cfg.main()
    # 2 layers x 7 projections (q, k, v, o, gate, up, down) load as bitsandbytes NF4 Linear4bit.
    assert summary["quantized_4bit_layers"] == 14 and summary["global_steps"] == 2
    adapter = load_file(Path(cfg.output_dir, file_name("sft_adapter", "adapter_weights")))
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    # trl keeps QLoRA adapter weights in bf16, as the QLoRA paper does (the 4-bit base computes in fp32 here).
    assert lora_b and all(t.dtype == torch.bfloat16 for t in lora_b)
    assert any(t.abs().max() > 0 for t in lora_b)  # lora_B starts at zero: non-zero means it was trained
