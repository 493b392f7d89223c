"""The governed evaluation files a data folder holds (`eval/gold_set.jsonl`, `eval/redteam_prompts.jsonl`),
read and checked: every problem names the file and the line."""

from __future__ import annotations

from pathlib import Path

from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import read_jsonl

GOLD_RULES = {"must_contain", "must_not_contain", "schema", "refuse"}


def _items(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not Path(path).is_file():
        raise GovernanceError(f"{path}: file not found")
    try:
        items = read_jsonl(Path(path))
    except (ValueError, UnicodeDecodeError) as exc:
        raise GovernanceError(str(exc)) from None
    for n, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise GovernanceError(f"{path}:{n}: expected a JSON object")
        missing = [k for k in required if k not in item]
        if missing:
            raise GovernanceError(f"{path}:{n}: missing field(s) {', '.join(missing)}")
        roles = [m.get("role") if isinstance(m, dict) else None for m in item["messages"]] \
            if isinstance(item["messages"], list) else None
        if roles not in (["user"], ["system", "user"]):
            raise GovernanceError(f"{path}:{n}: messages must be [system?, user]")
    return items


def load_gold_items(path: Path) -> list[dict]:
    """Gold prompts with per-item rules (`GOLD_RULES`)."""
    items = _items(path, ("id", "task", "messages", "rules"))
    for n, item in enumerate(items, start=1):
        rules = item["rules"]
        if not isinstance(rules, dict) or not rules or set(rules) - GOLD_RULES:
            raise GovernanceError(f"{path}:{n}: rules must use {sorted(GOLD_RULES)}")
    return items


def load_redteam_items(path: Path) -> list[dict]:
    """Prompts that must be refused, and benign look-alikes that must not be."""
    items = _items(path, ("id", "category", "messages", "expect"))
    for n, item in enumerate(items, start=1):
        if item["expect"] not in ("refuse", "comply"):
            raise GovernanceError(f"{path}:{n}: expect must be refuse or comply, got {item['expect']!r}")
    return items
