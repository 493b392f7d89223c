"""Checkpoints of a training run: the fingerprint that says which run they belong to, the resume
point after a crash or a kill, and where the last good state is when a run diverged."""

from __future__ import annotations

import json
from pathlib import Path

from ftassets.lib.core.catalog import CHECKPOINT_FINGERPRINT


def input_hashes(inputs: dict[str, str | None]) -> dict[str, str]:
    """The content hash of every given input (a folder hashed whole); inputs without a path are left out."""
    from ftassets.lib.core.files import sha256_file, sha256_tree

    return {name: sha256_tree(Path(path)) if Path(path).is_dir() else sha256_file(Path(path))
            for name, path in inputs.items() if path}


def run_fingerprint(settings, inputs: dict[str, str | None], hashes: dict[str, str] | None = None) -> dict:
    """What makes two runs the same run: every setting (but `resume`), and the content hash of every
    input (base weights, data files, a starting adapter). A checkpoint is resumed only by a run with
    an equal fingerprint. `hashes`: `input_hashes(inputs)` already computed (runs sharing inputs)."""
    return {"settings": settings.model_dump(exclude={"resume"}),
            "inputs": input_hashes(inputs) if hashes is None else hashes}


def _complete(checkpoint: Path) -> bool:
    """The Trainer writes trainer_state.json last: a checkpoint without a readable one was cut off."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
        return True
    except (OSError, ValueError):
        return False


def checkpoint_step(checkpoint: str | Path) -> int:
    return int(Path(checkpoint).name.split("-")[1])


def _checkpoints(checkpoint_dir: Path) -> list[Path]:
    """The Trainer's `checkpoint-<step>` folders, newest first."""
    import re

    found = (p for p in Path(checkpoint_dir).glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name))
    return sorted(found, key=checkpoint_step, reverse=True)


def resume_point(checkpoint_dir: Path, fingerprint: dict, resume: bool, report, main_process: bool = True) -> str | None:
    """The newest complete checkpoint of an interrupted run with this fingerprint, or None.

    Checkpoints of a different run (other data, other settings) and checkpoints cut off mid-write
    are removed, so a resumed run can only continue exactly the run that was interrupted. In a
    multi-process launch only the main process cleans up (it runs first); the others only look."""
    import shutil

    from ftassets.lib.core.files import write_json_atomic

    checkpoint_dir = Path(checkpoint_dir)
    marker = checkpoint_dir / CHECKPOINT_FINGERPRINT
    same_run = marker.is_file() and json.loads(marker.read_text()) == json.loads(json.dumps(fingerprint))
    if resume and same_run:
        for checkpoint in _checkpoints(checkpoint_dir):
            if _complete(checkpoint):
                report({"event": "resume", "checkpoint": str(checkpoint)})
                return str(checkpoint)
            if not main_process:
                continue
            report({"event": "discard_incomplete_checkpoint", "checkpoint": str(checkpoint)})
            shutil.rmtree(checkpoint)
    if not main_process:
        return None
    if checkpoint_dir.exists() and any(checkpoint_dir.iterdir()):
        report({"event": "discard_checkpoints", "reason": "resume off" if not resume else
                "no complete checkpoint" if same_run else "different settings or inputs",
                "checkpoint_dir": str(checkpoint_dir)})
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, fingerprint)
    return None


def prepare_checkpoints(settings, io, inputs: dict[str, str], report):
    """Both recipes: where checkpoints go (`checkpoint_dir`, default `<output_dir>/checkpoints`), and
    the checkpoint to resume from, decided by the main process first. Returns (process, checkpoint
    dir, resume checkpoint or None); `process` is this process's accelerate state (one process, or
    one rank of `accelerate launch`)."""
    import torch
    from accelerate import PartialState

    checkpoints = Path(io.checkpoint_dir or Path(io.output_dir) / "checkpoints")
    fingerprint = run_fingerprint(settings, inputs)
    process = PartialState(cpu=not torch.cuda.is_available())
    with process.main_process_first():
        resume_from = resume_point(checkpoints, fingerprint, settings.resume, report, process.is_main_process)
    return process, checkpoints, resume_from


def divergence_message(reason: str, checkpoint_dir: Path) -> str:
    """Divergence error: what happened and where the last good state is (kept for inspection/resume)."""
    kept = [p for p in _checkpoints(checkpoint_dir) if _complete(p)]
    where = (f"the last checkpoint saved before the divergence was seen is kept at {kept[0]}" if kept
             else "no checkpoint was saved before it")
    return f"training diverged: {reason}; no adapter was written; {where}"
