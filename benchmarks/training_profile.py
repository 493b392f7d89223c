"""Where the SFT recipe's training step spends its time on this CPU (torch.profiler), against the
matmul roofline measured in the same run: the explanation of the remaining gap to the issue's 2x
target. The recipe runs as it ships (`train_sft.main`), LoRA r16 on every linear layer, with a
profiler callback around a window of steps after warm-up.

Categories (self CPU time of the ops): matmul (mm/addmm/bmm and friends), attention kernels,
dtype casts and copies, elementwise/normalization/activation, optimizer (AdamW foreach), other ops;
"outside ops" is the step wall time no op accounts for (Python, the Trainer loop, data collation).

    .venv/bin/python benchmarks/training_profile.py [--precision bf16|fp32] [--append-results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.results import report  # noqa: E402
from ftassets.lib.core.catalog import Catalog

CATEGORIES = [
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
                "mkldnn", "onednn")),
    ("attention", ("scaled_dot_product", "flash_attention", "_efficient_attention", "aten::_softmax")),
    ("casts and copies", ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous",
                          "aten::cat", "aten::index", "aten::embedding")),
    ("optimizer", ("_foreach", "adam", "aten::lerp", "aten::addcdiv", "aten::addcmul", "aten::sqrt")),
    ("elementwise", ("aten::mul", "aten::add", "aten::sub", "aten::div", "aten::pow", "aten::rsqrt", "aten::mean",
                     "aten::silu", "aten::neg", "aten::sum", "aten::exp", "aten::log", "aten::where",
                     "aten::fill_", "aten::zero_", "aten::threshold", "silu_backward", "aten::cos", "aten::sin",
                     "_log_softmax", "nll_loss", "aten::masked_fill", "aten::sigmoid")),
]


def category(name: str) -> str:
    lowered = name.lower()
    for label, needles in CATEGORIES:
        if any(n.lower() in lowered for n in needles):
            return label
    return "other ops"


def matmul_gflops(dtype, size: int = 1536, repeats: int = 12) -> float:
    """The matmul roofline: the fastest of `repeats` timed size x size products."""
    from ftassets.lib.training import host as recipe_common

    return recipe_common.matmul_gflops(dtype, size, size, size, repeats=repeats, warmup=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-model", default=str(REPO / "data/artifacts/base_model"))
    parser.add_argument("--train-file", default=str(Catalog(REPO / "data/artifacts").path("data_splits", "train")))
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--append-results", action="store_true")
    args = parser.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    from ftassets.lib.training.host import resolve_precision
    from ftassets.lib.training.settings import RecipeIO, SftSettings
    from ftassets.lib.training.sft import main as train

    precision = resolve_precision(args.precision)
    roofline = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}

    class Window(TrainerCallback):
        def __init__(self):
            self.prof, self.started, self.tokens, self.wall = None, None, 0, 0.0

        def on_step_begin(self, args_, state, control, **kw):
            if state.global_step == args.warmup_steps:
                self.prof = profile(activities=[ProfilerActivity.CPU])
                self.prof.start()
                self.started, self.tokens = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args_, state, control, **kw):
            if self.prof and state.global_step == args.warmup_steps + args.steps:
                self.wall = time.perf_counter() - self.started
                self.tokens = state.num_input_tokens_seen - self.tokens
                self.prof.stop()

    window = Window()
    with tempfile.TemporaryDirectory() as out:
        settings = SftSettings(micro_batch_size=args.batch, max_steps=args.warmup_steps + args.steps,
                               precision=args.precision, learning_rate=2e-4, logging_steps=1, eval_steps=1000)
        io = RecipeIO(base_model=args.base_model, train_file=args.train_file, output_dir=out)
        summary = train(settings, io, report=lambda m: None, callbacks=[window])
    ops = window.prof.key_averages()
    by_cat: dict[str, float] = {}
    top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:12]
    for event in ops:
        by_cat[category(event.key)] = by_cat.get(category(event.key), 0.0) + event.self_cpu_time_total / 1e6
    # the profiler's per-thread time can exceed wall time (intra-op threads): shares are of op time
    op_total = sum(by_cat.values())
    tokens_per_s = window.tokens / window.wall
    params = summary["total_parameters"]
    achieved = 4 * params * tokens_per_s / 1e9  # frozen base: forward 2N + input-gradient backward 2N FLOPs/token
    mfu = achieved / roofline[precision]
    print(f"{args.steps} profiled steps, batch {args.batch}, {precision}: {window.wall:.1f} s, {window.tokens} tokens "
          f"(padding included), {tokens_per_s:.0f} tokens/s; torch threads {torch.get_num_threads()}")
    print(f"matmul roofline: fp32 {roofline['fp32']:.0f} GFLOP/s, bf16 {roofline['bf16']:.0f} GFLOP/s; "
          f"achieved ~{achieved:.0f} GFLOP/s = MFU {mfu:.2f} ({precision})")
    for label, seconds in sorted(by_cat.items(), key=lambda x: -x[1]):
        print(f"  {label:18s} {seconds:7.2f} s op time  {100 * seconds / op_total:5.1f}%")
    print("top ops by self CPU time:")
    for event in top:
        print(f"  {event.key[:48]:48s} {event.self_cpu_time_total / 1e6:7.2f} s  x{event.count}")
    shares = ", ".join(f"{label} {100 * s / op_total:.0f}%" for label, s in sorted(by_cat.items(), key=lambda x: -x[1]))
    line = (f"training profile ({precision}, batch {args.batch}, LoRA r16 all-linear, {args.steps} steps): "
            f"{tokens_per_s:.0f} tokens/s incl. padding, MFU {mfu:.2f} of the {precision} matmul roofline "
            f"({roofline[precision]:.0f} GFLOP/s; fp32 {roofline['fp32']:.0f}, bf16 {roofline['bf16']:.0f}); op time: "
            f"{shares}; {time.strftime('%Y-%m-%d')}")
    report(line, f"python benchmarks/training_profile.py --precision {args.precision} --append-results",
           args.append_results)
    print(json.dumps({"categories_s": {k: round(v, 2) for k, v in by_cat.items()}}))


if __name__ == "__main__":
    main()
