"""Reading what a data provider sent, whatever it is: every read is bounded before it is parsed.

A data file, its metadata sidecar and its folder's `source.yaml` come from outside the project and
may be broken or hostile (a compressed file that expands to gigabytes, one line without a newline,
JSON nested a million deep, YAML aliases that expand exponentially, a symlink out of the data
folder). Each reader here caps the bytes it reads (decompressed), the nesting it accepts and the
aliases it expands, and turns every problem into a reason code for that one file or line: the
caller quarantines it with its location, and the other lines and sources go on."""

from __future__ import annotations

import gzip
import json
import math
import zlib
from collections.abc import Iterator
from pathlib import Path

import yaml

from ftassets.lib.core.errors import GovernanceError
from ftassets.lib.curation.identifiers import safe_path

MAX_LINE_BYTES = 1 << 20  # one record above 1 MiB is an export error, not a chat example
MAX_FILE_BYTES = 1 << 30  # decompressed bytes read from one JSONL file; the rest is quarantined unread
MAX_JSON_FILE_BYTES = 64 << 20  # a .json file is parsed whole: above this, it must be JSONL
MAX_DEPTH = 32  # nesting of one record: a chat record is 4 deep
MAX_YAML_BYTES = 64 << 10  # source.yaml: a few fields
BOM = b"\xef\xbb\xbf"

DETAILS = {
    "line_too_large": f"line longer than {MAX_LINE_BYTES} bytes, not parsed",
    "file_too_large": f"file holds more than {MAX_FILE_BYTES} bytes (decompressed); the rest is not read",
    "json_file_too_large": f".json file larger than {MAX_JSON_FILE_BYTES} bytes (decompressed): write it as JSONL",
    "empty_file": "the file holds no records", "unreadable_file": "read failed (truncated gzip or I/O error)",
    "invalid_json": "not valid JSON", "invalid_utf8": "not valid UTF-8",
    "too_deeply_nested": f"nested deeper than {MAX_DEPTH} levels",
    "duplicate_key": "an object names the same key twice (which one counts is ambiguous)",
    "non_finite_number": "NaN or Infinity is not a JSON number",
    "outside_data_dir": "the path resolves outside the data folder (a symlink?): not read",
}


class _Rejected(ValueError):
    """A parse problem, by reason code."""


def _pairs(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _Rejected("duplicate_key")
    return dict(pairs)


def _constant(name: str):
    raise _Rejected("non_finite_number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise _Rejected("non_finite_number")
    return value


def _depth(value) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def parse_json(raw: bytes) -> tuple[object, str | None]:
    """(value, None) or (None, reason code): strict JSON (no duplicate keys, NaN or Infinity), at most
    MAX_DEPTH deep, UTF-8 with or without a byte-order mark."""
    try:
        text = raw.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float)
    except _Rejected as exc:
        return None, str(exc)
    except RecursionError:
        return None, "too_deeply_nested"
    except ValueError:  # JSONDecodeError, and integers past Python's digit limit
        return None, "invalid_json"
    if _depth(value) > MAX_DEPTH:
        return None, "too_deeply_nested"
    return value, None


def _lines(fh, max_line: int, max_file: int) -> Iterator[tuple[bytes | None, str | None]]:
    """(line, None) per line, (None, 'line_too_large') for one over `max_line` bytes (its rest skipped
    unread into memory), and a last (None, 'file_too_large') once `max_file` bytes were read."""
    total = 0
    while line := fh.readline(max_line + 1):
        total += len(line)
        too_long = len(line) > max_line and not line.endswith(b"\n")
        while too_long and line and not line.endswith(b"\n") and total <= max_file:
            line = fh.readline(1 << 20)
            total += len(line)
        if total > max_file:
            yield None, "file_too_large"
            return
        yield (None, "line_too_large") if too_long else (line, None)


def iter_raw_items(path: Path, max_line_bytes: int = MAX_LINE_BYTES,
                   max_file_bytes: int = MAX_FILE_BYTES) -> Iterator[tuple[int, object, str | None]]:
    """Yield (line_or_index, parsed_item_or_None, reason_or_None) for one data file, never raising.

    JSONL is read line by line with every read bounded; a `.json` file holds one object or a list of
    them and is read whole up to MAX_JSON_FILE_BYTES. An empty file, a file cut off or unreadable, and
    the unread rest of a file past its byte limit yield one rejection each: no file disappears
    without a trace, and `raw == kept + quarantined` holds."""
    opener = gzip.open if path.name.endswith(".gz") else open
    count, lineno = 0, 0
    try:
        with opener(path, "rb") as fh:
            if path.name.removesuffix(".gz").endswith(".json"):
                yield from _json_file(fh)
                return
            for lineno, (line, reason) in enumerate(_lines(fh, max_line_bytes, max_file_bytes), start=1):
                if reason is None and not line.removeprefix(BOM if lineno == 1 else b"").strip():
                    continue
                count += 1
                yield (lineno, *parse_json(line)) if reason is None else (lineno, None, reason)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, MemoryError):
        yield lineno + 1, None, "unreadable_file"
        return
    if count == 0:
        yield 0, None, "empty_file"


def _json_file(fh) -> Iterator[tuple[int, object, str | None]]:
    raw = fh.read(MAX_JSON_FILE_BYTES + 1)
    if len(raw) > MAX_JSON_FILE_BYTES:
        yield 1, None, "json_file_too_large"
        return
    if not raw.removeprefix(BOM).strip():
        yield 0, None, "empty_file"
        return
    items, reason = parse_json(raw)
    if reason:
        yield 1, None, reason
        return
    items = items if isinstance(items, list) else [items]
    if not items:
        yield 0, None, "empty_file"
    for index, item in enumerate(items, start=1):
        yield index, item, None


def read_meta_sidecar(data_file: Path) -> tuple[dict[str, dict], str | None]:
    """`examples.jsonl` may have `examples.meta.jsonl` beside it: per-id metadata. Returns (meta,
    None), or ({}, 'file:line: why') when the sidecar cannot be used (its data file then waits in
    quarantine: metadata decides the task and reviewer, so it is not guessed)."""
    name = data_file.name.removesuffix(".gz")
    stem = name.removesuffix(".jsonl").removesuffix(".json")
    sidecar = data_file.with_name(f"{stem}.meta.jsonl")
    if not sidecar.is_file():
        return {}, None
    meta = {}
    for line, row, reason in iter_raw_items(sidecar):
        if reason == "empty_file":
            continue
        if reason is None and not isinstance(row, dict):
            reason = "not_an_object"
        if reason is None and not all(isinstance(row.get(k, ""), (str, type(None))) for k in ("task", "reviewed_by")):
            reason = "task and reviewed_by must be strings"
        if reason:
            return {}, f"{safe_path(sidecar.name)}:{line}: {DETAILS.get(reason, reason)}"
        meta[str(row.get("id"))] = row
    return meta, None


class _NoAliases(yaml.SafeLoader):
    """YAML without anchors and aliases: a few bytes of aliases can expand to gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise GovernanceError("YAML aliases (*name) are not allowed here")
        return super().compose_node(parent, index)


def load_source_yaml(path: Path) -> dict:
    """A source's `source.yaml`: at most MAX_YAML_BYTES, no aliases, a mapping of single values."""
    with open(path, "rb") as fh:
        raw = fh.read(MAX_YAML_BYTES + 1)
    if len(raw) > MAX_YAML_BYTES:
        raise GovernanceError(f"{path}: larger than {MAX_YAML_BYTES} bytes; a source.yaml holds a few fields")
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_NoAliases)  # noqa: S506 (a SafeLoader subclass)
    except UnicodeDecodeError:
        raise GovernanceError(f"{path}: not valid UTF-8") from None
    except GovernanceError as exc:
        raise GovernanceError(f"{path}: {exc}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise GovernanceError(f"{path}: invalid YAML ({str(exc)[:200]})") from None
    if not isinstance(data, dict):
        raise GovernanceError(f"{path}: expected a mapping at the top level")
    nested = sorted(str(k) for k, v in data.items() if isinstance(v, (dict, list)))
    if nested:
        raise GovernanceError(f"{path}: field(s) {', '.join(nested)} must be a single value, not a list or mapping")
    return data


def inside(root: Path, path: Path) -> bool:
    """Whether `path`, symlinks resolved, lies under `root` (resolved too)."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())
