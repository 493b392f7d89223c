"""Reading data sources and converting common chat formats to one canonical record.

A source is a folder holding `.jsonl` / `.json` (optionally `.gz`) files and a `source.yaml`.
Every line (or list item) becomes either a canonical record

    {"id", "messages": [{"role", "content"}, ...], "source", "origin": {"file", "line"}, "meta"}

or a rejection `{"source", "origin", "reason", "detail"}`: nothing is dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.core.files import sha256_tree
from ftassets.lib.curation.identifiers import safe, safe_path
from ftassets.lib.curation.reading import DETAILS, inside, iter_raw_items, load_source_yaml, read_meta_sidecar

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
    problem: tuple[str, str] | None = None  # (reason code, detail) when the folder cannot be used


def load_source(folder: Path) -> Source:
    folder = Path(folder)
    spec = load_source_yaml(folder / "source.yaml")
    unknown = sorted(set(spec) - SOURCE_FIELDS)
    if unknown:
        raise GovernanceError(f"{folder / 'source.yaml'}: unknown field(s): {', '.join(unknown)}")
    missing = [f for f in ("license", "provenance", "kind") if not spec.get(f)]
    if missing:
        raise GovernanceError(f"{folder / 'source.yaml'}: missing required field(s): {', '.join(missing)}")
    if spec["kind"] not in ("sft", "preference"):
        raise GovernanceError(f"{folder / 'source.yaml'}: kind must be 'sft' or 'preference', got {spec['kind']!r}")
    formats = SFT_FORMATS if spec["kind"] == "sft" else PREFERENCE_FORMATS
    if spec.get("format") is not None and spec["format"] not in formats:
        raise GovernanceError(f"{folder / 'source.yaml'}: format {spec['format']!r} is not a {spec['kind']} format "
                              f"({', '.join(formats)}; leave it out to detect per record)")
    files = data_files(folder)
    return Source(name=safe(folder.name), folder=folder, license=str(spec["license"]).lower(),
                  provenance=str(spec["provenance"]), kind=spec["kind"], task=str(spec.get("task", "")),
                  reviewed_by=safe(str(spec.get("reviewed_by", ""))), do_not_train=bool(spec.get("do_not_train", False)),
                  format=spec.get("format"), files=files)


def discover_sources(raw_root: Path) -> list[Source]:
    """Every source folder under `raw_root`. A folder with data files whose `source.yaml` is missing
    or invalid is still returned, with `problem` set: its files are quarantined, never skipped."""
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        raise GovernanceError(f"{raw_root}: data root has no raw/ folder of sources")
    out = []
    for folder in source_folders(raw_root):
        name = safe(folder.name)  # the folder's own name may hold PII: never recorded as written
        if not inside(raw_root, folder):
            out.append(_unusable(folder, "outside_data_dir", f"{name} resolves outside the raw folder: not read"))
        elif not valid_source_name(folder.name):
            out.append(_unusable(folder, "invalid_source_name", "a source folder name must be printable and "
                                                                 "contain no '...'"))
        elif not (folder / "source.yaml").is_file():
            out.append(_unusable(folder, "missing_source_yaml", f"{name}/source.yaml not found"))
        else:
            try:
                out.append(load_source(folder))
            except Exception as exc:  # any problem of one source.yaml quarantines that source, never the others
                detail = (str(exc).replace(str(folder), f"raw/{name}") if isinstance(exc, GovernanceError)
                          else f"{type(exc).__name__} reading source.yaml")
                out.append(_unusable(folder, "invalid_source_yaml", detail))
    return out


def valid_source_name(name: str) -> bool:
    """A folder name that can be a Dagster partition key (`raw_sources`): printable, no '...'."""
    return name.isprintable() and "..." not in name


def source_folders(raw_root: Path) -> list[Path]:
    """Folders under `raw_root` that hold a source.yaml or data files (others are not sources)."""
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        return []
    return [p for p in sorted(raw_root.iterdir())
            if p.is_dir() and ((p / "source.yaml").is_file() or data_files(p))]


def source_versions(raw_root: Path) -> dict[str, str]:
    """{source folder: content hash of every file in it (data, sidecar, source.yaml)}: a source's version."""
    return {safe(folder.name): sha256_tree(folder)[:32] for folder in source_folders(raw_root)
            if valid_source_name(folder.name) and inside(raw_root, folder)}


def _unusable(folder: Path, reason: str, detail: str) -> Source:
    return Source(name=safe(folder.name), folder=folder, license="", provenance="", kind="sft", task="",
                  reviewed_by="", do_not_train=True, files=data_files(folder), problem=(reason, detail))


def data_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and _is_data_file(p))


def _is_data_file(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return (name.endswith(".jsonl") or name.endswith(".json")) and not name.endswith(".meta.jsonl")


def origin_file(source: Source, path: Path) -> str:
    """How records name their file: relative to the data root (`raw/<source>/<file>`), each part `safe`."""
    return safe_path(path.relative_to(source.folder.parent.parent).as_posix())


def raw_origins(source: Source) -> list[tuple[str, int]]:
    """(file, line) of every raw item validation must account for: each line or list item, or the
    whole file (line 0) when it is empty, or when the source has no usable source.yaml."""
    out = []
    for path in source.files:
        _, problem = file_metadata(source, path)
        lines = [0] if problem else [line for line, _, _ in iter_raw_items(path)]
        out += [(origin_file(source, path), line) for line in lines]
    return out


def file_metadata(source: Source, path: Path) -> tuple[dict[str, dict], tuple[str, str] | None]:
    """A data file's per-id metadata (its sidecar), or why the whole file cannot be read: its source
    has no usable source.yaml, it resolves outside the data folder, or its sidecar is broken."""
    if source.problem:
        return {}, source.problem
    if not inside(source.folder, path):
        return {}, ("outside_data_dir", DETAILS["outside_data_dir"])
    meta, problem = read_meta_sidecar(path)
    return meta, ("invalid_sidecar", problem) if problem else None


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
            if not isinstance(t, dict) or not isinstance(t.get("value"), str) or not isinstance(t.get("from"), str):
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
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or not isinstance(m.get("role"), str):
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
