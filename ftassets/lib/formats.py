"""Reading data sources and converting common chat formats to one canonical record.

A source is a folder holding `.jsonl` / `.json` (optionally `.gz`) files and a `source.yaml`.
Every line (or list item) becomes either a canonical record

    {"id", "messages": [{"role", "content"}, ...], "source", "origin": {"file", "line"}, "meta"}

or a rejection `{"source", "origin", "reason", "detail"}`: nothing is dropped silently.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ftassets.lib.governance import GovernanceError, load_yaml

SOURCE_FIELDS = {"license", "provenance", "format", "task", "reviewed_by", "do_not_train", "kind"}
SFT_FORMATS = ("openai_chat", "alpaca", "sharegpt", "prompt_response")
PREFERENCE_FORMATS = ("trl_preference", "openai_dpo", "sharegpt_preference", "hh_rlhf")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system"}


@dataclass
class Source:
    name: str
    folder: Path
    license: str
    provenance: str
    kind: str
    task: str
    reviewed_by: str
    do_not_train: bool
    format: str | None = None
    files: list[Path] = field(default_factory=list)


def load_source(folder: Path) -> Source:
    folder = Path(folder)
    spec = load_yaml(folder / "source.yaml")
    unknown = sorted(set(spec) - SOURCE_FIELDS)
    if unknown:
        raise GovernanceError(f"{folder / 'source.yaml'}: unknown field(s): {', '.join(unknown)}")
    missing = [f for f in ("license", "provenance", "kind") if not spec.get(f)]
    if missing:
        raise GovernanceError(f"{folder / 'source.yaml'}: missing required field(s): {', '.join(missing)}")
    if spec["kind"] not in ("sft", "preference"):
        raise GovernanceError(f"{folder / 'source.yaml'}: kind must be 'sft' or 'preference', got {spec['kind']!r}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and _is_data_file(p))
    return Source(name=folder.name, folder=folder, license=str(spec["license"]).lower(),
                  provenance=str(spec["provenance"]), kind=spec["kind"], task=str(spec.get("task", "")),
                  reviewed_by=str(spec.get("reviewed_by", "")), do_not_train=bool(spec.get("do_not_train", False)),
                  format=spec.get("format"), files=files)


def discover_sources(raw_root: Path) -> list[Source]:
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        raise GovernanceError(f"{raw_root}: data root has no raw/ folder of sources")
    return [load_source(p) for p in sorted(raw_root.iterdir()) if (p / "source.yaml").is_file()]


def _is_data_file(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return (name.endswith(".jsonl") or name.endswith(".json")) and not name.endswith(".meta.jsonl")


def iter_raw_items(path: Path) -> Iterator[tuple[int, object, str | None]]:
    """Yield (line_or_index, parsed_item_or_None, error_reason) for one data file."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if path.name.removesuffix(".gz").endswith(".json"):
        try:
            items = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            yield 1, None, "invalid_utf8"
            return
        except json.JSONDecodeError:
            yield 1, None, "invalid_json"
            return
        if not isinstance(items, list):
            items = [items]
        for index, item in enumerate(items, start=1):
            yield index, item, None
        return
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            yield lineno, None, "invalid_utf8"
            continue
        try:
            yield lineno, json.loads(text), None
        except json.JSONDecodeError:
            yield lineno, None, "invalid_json"


def detect_format(item: dict) -> str | None:
    if not isinstance(item, dict):
        return None
    if "chosen" in item and "rejected" in item and "prompt" in item:
        return "trl_preference"
    if "preferred_output" in item and "non_preferred_output" in item:
        return "openai_dpo"
    if "chosen" in item and "rejected" in item and "conversations" in item:
        return "sharegpt_preference"
    if isinstance(item.get("chosen"), str) and isinstance(item.get("rejected"), str) and HH_ASSISTANT in item["chosen"]:
        return "hh_rlhf"
    if "messages" in item:
        return "openai_chat"
    if "conversations" in item:
        return "sharegpt"
    if "instruction" in item and "output" in item:
        return "alpaca"
    if "prompt" in item and ("response" in item or "completion" in item):
        return "prompt_response"
    return None


def to_messages(item: dict, fmt: str) -> list[dict]:
    """Convert one SFT item to a message list; raises ValueError(reason_code) when it cannot."""
    if fmt == "openai_chat":
        return _messages(item.get("messages"))
    if fmt == "alpaca":
        prompt = item["instruction"] + (f"\n{item['input']}" if item.get("input") else "")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": item["output"]}]
    if fmt == "sharegpt":
        turns = item.get("conversations")
        if not isinstance(turns, list) or not turns:
            raise ValueError("missing_messages")
        out = [{"role": "system", "content": item["system"]}] if item.get("system") else []
        for t in turns:
            if not isinstance(t, dict) or not isinstance(t.get("value"), str):
                raise ValueError("malformed_message")
            out.append({"role": SHAREGPT_ROLES.get(str(t.get("from")), t.get("from")), "content": t["value"]})
        return out
    if fmt == "prompt_response":
        answer = item.get("response", item.get("completion"))
        return [{"role": "user", "content": item["prompt"]}, {"role": "assistant", "content": answer}]
    raise ValueError("unknown_format")


HH_HUMAN, HH_ASSISTANT = "\n\nHuman:", "\n\nAssistant:"


def to_preference(item: dict, fmt: str) -> tuple[list[dict], str, str]:
    """Convert one preference item to (prompt messages, chosen reply, rejected reply).

    The prompt is the whole conversation before the judged reply (system and earlier turns
    included) and ends with a user turn; raises ValueError(reason_code) when it cannot."""
    if fmt == "trl_preference":
        prompt = item["prompt"]
        prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else _messages(prompt)
        return prompt, _reply(item["chosen"]), _reply(item["rejected"])
    if fmt == "openai_dpo":
        source = item["input"]
        prompt = _messages(source.get("messages") if isinstance(source, dict) else None)
        return prompt, _reply(item["preferred_output"]), _reply(item["non_preferred_output"])
    if fmt == "sharegpt_preference":
        prompt = to_messages({"conversations": item["conversations"], "system": item.get("system")}, "sharegpt")
        return prompt, _reply(item["chosen"]), _reply(item["rejected"])
    if fmt == "hh_rlhf":
        chosen, rejected = item["chosen"], item["rejected"]
        cut = chosen.rfind(HH_ASSISTANT)
        if cut < 0 or not rejected.startswith(chosen[:cut] + HH_ASSISTANT):
            raise ValueError("hh_prompts_differ")
        prompt = _hh_turns(chosen[:cut])
        return prompt, chosen[cut + len(HH_ASSISTANT):].strip(), rejected[cut + len(HH_ASSISTANT):].strip()
    raise ValueError("unknown_format")


def _messages(value) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise ValueError("missing_messages")
    out = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise ValueError("malformed_message")
        out.append({"role": m.get("role"), "content": m["content"]})
    return out


def _reply(value) -> str:
    """A judged reply: a string, one {role, content} / {from, value} turn, or a list ending in one."""
    if isinstance(value, list) and value:
        value = value[-1]
    if isinstance(value, dict):
        role = value.get("role", SHAREGPT_ROLES.get(str(value.get("from")), value.get("from")))
        if role != "assistant":
            raise ValueError("reply_not_assistant")
        value = value.get("content", value.get("value"))
    if not isinstance(value, str):
        raise ValueError("malformed_preference")
    return value


def _hh_turns(transcript: str) -> list[dict]:
    """`\n\nHuman: ... \n\nAssistant: ...` into messages (the prompt part, ending with Human)."""
    parts = re.split(r"(\n\nHuman:|\n\nAssistant:)", transcript)
    if parts[0].strip():
        raise ValueError("hh_malformed")
    out = []
    for marker, text in zip(parts[1::2], parts[2::2]):
        out.append({"role": "user" if marker == HH_HUMAN else "assistant", "content": text.strip()})
    if not out:
        raise ValueError("hh_malformed")
    return out


def read_meta_sidecar(data_file: Path) -> dict[str, dict]:
    """`examples.jsonl` may have `examples.meta.jsonl` beside it: per-id metadata."""
    name = data_file.name.removesuffix(".gz")
    stem = name.removesuffix(".jsonl").removesuffix(".json")
    sidecar = data_file.with_name(f"{stem}.meta.jsonl")
    if not sidecar.is_file():
        return {}
    meta = {}
    for lineno, line in enumerate(sidecar.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GovernanceError(f"{sidecar}:{lineno}: invalid JSON ({exc.msg})") from exc
            meta[str(row.get("id"))] = row
    return meta
