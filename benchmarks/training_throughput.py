"""Training throughput: the project's SFT recipe against a plain trl SFTTrainer script, side by side
in one run, on the same base model, the same examples (one epoch over the first N training
examples, so both process exactly the same tokens), the same LoRA config, batch size, schedule and
loss (assistant turn only: the plain script uses trl's prompt/completion format, as trl documents).
No gradient checkpointing on either side. The plain script is the fp32 baseline the issue names
(trl's SFTConfig defaults are bf16=True and gradient_checkpointing=True; bf16 autocast on a CPU
without native bf16 made that default run for over 20 minutes on 20 steps on a 2-core AMD machine);
ours runs as it ships: precision `auto` (on a CPU, bf16 autocast only where a bf16 matmul measures
faster than fp32 there) and glibc malloc told to keep freed memory (`keep_freed_memory`); the line
says which. A third run, plain trl with only that allocator setting added, splits the gain between
the allocator and the rest. MFU for both against the fp32/bf16 matmul rooflines measured in the same
run (4 x parameters FLOPs per token: the base is frozen, so no weight gradients). Each side runs in
its own fresh process, one after the other, in `--rounds` rounds (the order rotates each round);
the median wall of each side counts, and every round's wall is printed: the plain baseline's time
swings most from run to run (79-100 s for the same epoch here), because so much of it is the
kernel's page-fault work. The mean training loss of the epoch is
reported for both (the sample order differs: random vs length-grouped).

    .venv/bin/python benchmarks/training_throughput.py --examples 160 --batch 8 [--append-results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.results import report  # noqa: E402
from ftassets.lib.core.catalog import Catalog  # noqa: E402

PLAIN_TRL = r'''
import json, sys, time
from datasets import Dataset
from peft import LoraConfig
from trl import SFTConfig, SFTTrainer
base, data, out, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if sys.argv[5:] == ["keep-freed-memory"]:  # the ablation: plain trl with our allocator setting
    from ftassets.lib.training.host import keep_freed_memory
    assert keep_freed_memory()
msgs = [json.loads(l)["messages"] for l in open(data) if l.strip()]
rows = [{"prompt": m[:-1], "completion": m[-1:]} for m in msgs]
args = SFTConfig(output_dir=out, per_device_train_batch_size=batch, num_train_epochs=1, learning_rate=2e-4,
                 logging_steps=1, report_to="none", save_strategy="no", use_cpu=True, max_length=512, seed=42,
                 disable_tqdm=True, dataloader_num_workers=0, bf16=False, gradient_checkpointing=False)
trainer = SFTTrainer(model=base, args=args, train_dataset=Dataset.from_list(rows),
                     peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
start = time.perf_counter(); trainer.train(); wall = time.perf_counter() - start
losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
print("RESULT " + json.dumps({"wall": wall, "steps": trainer.state.global_step, "losses": losses}))
'''

OURS = r'''
import json, sys, time
from ftassets.lib.training.settings import RecipeIO, SftSettings
from ftassets.lib.training.sft import main
base, data, out, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
settings = SftSettings(micro_batch_size=batch, epochs=1, learning_rate=2e-4, logging_steps=1, warmup_ratio=0.0,
                       lr_scheduler="linear", seed=42)
summary = main(settings, RecipeIO(base_model=base, train_file=data, output_dir=out), report=lambda m: None)
print("RESULT " + json.dumps({"wall": summary["wall_time_s"], "steps": summary["global_steps"],
                              "keep_freed_memory": summary["keep_freed_memory"],
                              "losses": [v for _, v in summary["train_loss_curve"]],
                              "precision": summary["precision"], "parameters": summary["total_parameters"]}))
'''


def run(script: str, base: str, data: Path, batch: int, *extra: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", script, base, str(data), out, str(batch), *extra], env=env,
                              capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
        return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default=str(REPO / "data/artifacts/base_model"))
    parser.add_argument("--train-file", default=str(Catalog(REPO / "data/artifacts").path("data_splits", "train")))
    parser.add_argument("--examples", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="runs per side; the median wall counts")
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    rows = [json.loads(x) for x in Path(args.train_file).read_text().splitlines() if x.strip()][:args.examples]
    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    tokens = sum(len(tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)["input_ids"])
                 for r in rows)
    sides = {"plain": (PLAIN_TRL,), "ours": (OURS,), "plain_kept": (PLAIN_TRL, "keep-freed-memory")}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for round_ in range(args.rounds):  # rotate the order: no side always runs first
            names = list(sides)[round_ % 3:] + list(sides)[:round_ % 3]
            for name in names:
                script, *extra = sides[name]
                runs[name].append(run(script, args.base_model, data, args.batch, *extra))
    def median(runs_: list[dict]) -> dict:  # the first run's losses (seeded: every round's are equal)
        return {**runs_[0], "wall": statistics.median(r["wall"] for r in runs_)}

    plain, ours, plain_kept = median(runs["plain"]), median(runs["ours"]), median(runs["plain_kept"])
    walls = "; ".join(f"{name} " + "/".join(f"{r['wall']:.1f}" for r in rs) + " s" for name, rs in runs.items())
    print(f"wall per round: {walls}")
    plain_tps, ours_tps, kept_tps = tokens / plain["wall"], tokens / ours["wall"], tokens / plain_kept["wall"]
    import torch

    from benchmarks.training_profile import matmul_gflops

    roofline = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    flops_per_token = 4 * ours["parameters"]  # frozen base: forward 2N + input-gradient backward 2N
    mfu_plain = flops_per_token * plain_tps / 1e9 / roofline["fp32"]
    mfu_ours = flops_per_token * ours_tps / 1e9 / roofline.get(ours["precision"], roofline["fp32"])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{len(rows)} examples, {tokens} tokens (no padding), batch {args.batch}, LoRA r16 all-linear; plain trl "
          f"fp32, ours {ours['precision']} (precision auto)")
    print(f"matmul roofline measured now: fp32 {roofline['fp32']:.0f} GFLOP/s, bf16 {roofline['bf16']:.0f} GFLOP/s; "
          f"MFU plain {mfu_plain:.2f} (fp32), ours {mfu_ours:.2f} ({ours['precision']})")
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(f"plain trl: {plain['steps']} steps, {plain['wall']:.1f} s, {plain_tps:.1f} tokens/s, "
          f"mean loss {mean(plain['losses']):.4f}")
    print(f"plain trl + our allocator setting: {plain_kept['steps']} steps, {plain_kept['wall']:.1f} s, "
          f"{kept_tps:.1f} tokens/s, mean loss {mean(plain_kept['losses']):.4f}")
    print(f"ours:      {ours['steps']} steps, {ours['wall']:.1f} s, {ours_tps:.1f} tokens/s, "
          f"mean loss {mean(ours['losses']):.4f}")
    summary = (f"training vs plain trl: {ours_tps / plain_tps:.2f}x tokens/s (plain trl {plain_tps:.0f} tok/s, "
               f"ours {ours_tps:.0f} tok/s; plain trl with our allocator setting {kept_tps:.0f} tok/s, so "
               f"{ours_tps / kept_tps:.2f}x from the rest (precision, length grouping, labelled-positions-only LM "
               f"head); median of {args.rounds} rounds, walls {walls}; mean epoch loss {mean(plain['losses']):.3f} vs "
               f"{mean(ours['losses']):.3f}; MFU {mfu_plain:.2f} fp32 vs {mfu_ours:.2f} {ours['precision']} "
               f"(matmul roofline fp32 {roofline['fp32']:.0f}, bf16 {roofline['bf16']:.0f} GFLOP/s); {len(rows)} "
               f"examples, {tokens} tokens, batch {args.batch}, plain fp32, ours {ours['precision']} "
               f"(keep_freed_memory {ours['keep_freed_memory']}), "
               f"LoRA r16 all-linear, {time.strftime('%Y-%m-%d')})")
    report(summary, f"python benchmarks/training_throughput.py --examples {args.examples} --batch {args.batch} "
                    f"--rounds {args.rounds} --append-results", args.append_results)


if __name__ == "__main__":
    main()
