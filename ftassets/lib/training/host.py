"""Process-wide settings a training recipe makes on its host before loading anything: the precision
(measured on a CPU, not assumed), the allocator, and trl's labelled-positions-only scoring. Each is
recorded in the run's summary."""

from __future__ import annotations

import time

import torch


def resolve_precision(precision: str) -> str:
    """'auto': bf16 (fp16 without it) on CUDA; on a CPU, bf16 only where its matmuls measure faster
    than fp32's here and now: a capability flag is not enough (a CPU with avx512_bf16 can still run
    bf16 matmuls slower than fp32; figures in docs/figures.md)."""
    if precision != "auto":
        if precision not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"precision must be auto, bf16, fp16 or fp32, got {precision!r}")
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    speed = cpu_matmul_gflops()
    return "bf16" if speed["bf16"] > CPU_BF16_MARGIN * speed["fp32"] else "fp32"


CPU_BF16_MARGIN = 1.2  # bf16 autocast adds casts (seen in benchmarks/training_profile.py): it must win clearly
_MATMUL_SHAPE = (1024, 576, 1536)  # tokens x hidden x MLP width of a SmolLM2-135M batch


def matmul_gflops(dtype, m: int, k: int, n: int, repeats: int, warmup: int = 1) -> float:
    """GFLOP/s of an (m x k) @ (k x n) product: the fastest of `repeats` timed runs (the best, not the
    mean: on a shared machine a neighbour's burst should not lower the figure)."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(warmup):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def cpu_matmul_gflops(repeats: int = 8) -> dict[str, float]:
    """GFLOP/s of one training-sized matmul in fp32 and bf16 on this CPU (the best of `repeats`,
    ~0.2 s in all). Cached: a process measures once."""
    if not _measured:
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            _measured[name] = round(matmul_gflops(dtype, *_MATMUL_SHAPE, repeats=repeats), 1)
    return dict(_measured)


_measured: dict[str, float] = {}


def keep_freed_memory() -> bool:
    """Tell glibc malloc to keep freed memory for reuse instead of handing it back to the kernel.

    Its defaults serve every tensor over the (adaptive) mmap threshold with a fresh mmap and trim the
    heap top on free, so each training step maps, page-faults and unmaps the same activations again;
    with this the kernel's share of CPU time drops and losses stay identical (docs/figures.md). The
    process keeps its peak heap until it exits, which a training process
    reaches every step anyway. Returns False where the C library is not glibc (nothing changed)."""
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    trim = libc.mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1))
    mmap = libc.mallopt(m_mmap_threshold, ctypes.c_int(2**30))  # only single blocks over 1 GiB get their own mmap
    return bool(trim and mmap)


def score_labelled_positions_only() -> bool:
    """Have trl's fused LM head project only the positions that carry a label on a CPU too.

    trl (1.16) scores just the labelled (completion) positions on CUDA/XPU, but everywhere else every
    position, prompt and padding included, so that compiled tile shapes stay fixed. Eager CPU training
    compiles nothing, and the loss is the same sum over the same labelled positions either way, only
    cheaper (docs/figures.md). It rebinds `_use_triton` inside `trl.trainer.utils` only, which
    that module consults for this one decision. Returns False (nothing changed) where this trl has no
    such name."""
    import trl.trainer.utils as trl_utils

    decide = getattr(trl_utils, "_use_triton", None)
    if decide is None or getattr(decide, "ftassets_cpu_compact", False):
        return decide is not None

    def compact_on_cpu(device) -> bool:
        return device.type == "cpu" or decide(device)

    compact_on_cpu.ftassets_cpu_compact = True
    trl_utils._use_triton = compact_on_cpu
    return True


def host_settings(settings) -> dict:
    """Process-wide settings a recipe makes before loading anything, as recorded in its summary: the
    allocator setting, labelled-positions-only scoring, and on a CPU with precision auto the matmul
    speeds that chose the precision."""
    made = {"keep_freed_memory": keep_freed_memory() if settings.keep_freed_memory else False,
            "score_labelled_positions_only": score_labelled_positions_only()}
    if settings.precision == "auto" and not torch.cuda.is_available():
        made["cpu_matmul_gflops"] = cpu_matmul_gflops()
    return made
