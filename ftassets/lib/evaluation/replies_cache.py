"""Generated replies kept by everything that determines them, so they are generated once.

The key hashes the model's identity (the weights hash of the model, or of the base and each adapter in
the order applied), its fingerprint (model and generation config, adapter configs, dtype, device, the
tokenizer's chat template, size and special tokens), every prompt with its task, each task's decoding
settings, the generation and model-loading code and the torch / transformers / peft versions. Re-running `eval_report` after a
contract edit (a threshold, a metric) re-scores the same replies; the champion, evaluated once as a
candidate, is not generated again. Anything else that changes is a new key: a stale reply is never served.
"""

from __future__ import annotations

import json
from pathlib import Path

from ftassets.lib.core.files import sha256_bytes, sha256_file, write_json_atomic
from ftassets.lib.core.generation import task_settings

KEEP = 64  # entries kept (least recently used dropped): one per compared model and prompt set


def fingerprint(model, tokenizer) -> dict:
    """What else than the weights decides a model's replies (paths left out: a bundle's copy of a model is
    the same model)."""
    config = model.config.to_dict() if getattr(model, "config", None) is not None else {}
    config.pop("_name_or_path", None)
    generation = getattr(model, "generation_config", None)
    adapters = {name: {k: v for k, v in c.to_dict().items() if k != "base_model_name_or_path"}
                for name, c in (getattr(model, "peft_config", None) or {}).items()}
    return {"config": config, "generation_config": generation.to_dict() if generation is not None else {},
            "adapters": adapters, "dtype": str(getattr(model, "dtype", "")), "device": str(getattr(model, "device", "")),
            "tokenizer": {"class": type(tokenizer).__name__, "size": len(tokenizer), "eos": tokenizer.eos_token_id,
                          "pad": tokenizer.pad_token_id, "chat_template": tokenizer.chat_template or ""}}


def key(model_id: str, model_fingerprint: dict, prompts: list[dict], policy: dict) -> str:
    import peft
    import torch
    import transformers

    from ftassets.lib.core import generation, models

    tasks = sorted({p["task"] for p in prompts})
    material = {"model": model_id, "fingerprint": model_fingerprint, "prompts": prompts,
                "decoding": {t: task_settings(policy, t) for t in tasks},
                "code": [sha256_file(Path(m.__file__)) for m in (generation, models)], "torch": torch.__version__,
                "transformers": transformers.__version__, "peft": peft.__version__}
    return sha256_bytes(json.dumps(material, sort_keys=True, ensure_ascii=False, default=str).encode())


class RepliesCache:
    def __init__(self, folder: Path, keep: int = KEEP):
        self.folder, self.keep = Path(folder), keep

    def get(self, entry: str, n: int) -> list[str] | None:
        """The cached replies, or None (missing, unreadable or of another length: generated again)."""
        path = self.folder / f"{entry}.json"
        try:
            replies = json.loads(path.read_text(encoding="utf-8"))["replies"]
        except (OSError, ValueError, KeyError):
            return None
        if not isinstance(replies, list) or len(replies) != n or not all(isinstance(r, str) for r in replies):
            return None
        path.touch()  # recently used
        return replies

    def put(self, entry: str, replies: list[str]) -> None:
        write_json_atomic(self.folder / f"{entry}.json", {"replies": replies})
        entries = sorted(self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[self.keep:]:
            old.unlink(missing_ok=True)

    def replies(self, entry: str, n: int, generate) -> tuple[list[str], bool]:
        """(replies, whether they came from the cache); `generate()` makes them on a miss."""
        cached = self.get(entry, n)
        if cached is not None:
            return cached, True
        fresh = generate()
        self.put(entry, fresh)
        return fresh, False
