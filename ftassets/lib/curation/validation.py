"""Schema and template checks that turn raw source items into validated chat records.

Each check is a small filter `check(record) -> reason | None` (datatrove's BaseFilter habit):
the first failing check's reason code sends the record to quarantine with its source file and
line, and the stage counts rejections per reason. Counts always add up:
`read == kept + quarantined`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ftassets.lib.curation.formats import (PREFERENCE_FORMATS, SFT_FORMATS, Source, detect_format, file_metadata,
                                           origin_file, to_messages, to_preference)
from ftassets.lib.curation.identifiers import safe
from ftassets.lib.curation.reading import DETAILS, iter_raw_items

KNOWN_ROLES = {"system", "user", "assistant"}


@dataclass
class ValidationResult:
    kept: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)

    @property
    def reasons(self) -> dict[str, int]:
        return dict(sorted(Counter(q["reason"] for q in self.quarantined).items()))


def role_order_reason(messages: list[dict]) -> str | None:
    """Optional system turn first, then user/assistant alternating, ending on the assistant."""
    roles = [m["role"] for m in messages]
    if any(r not in KNOWN_ROLES for r in roles):
        return "unknown_role"
    body = roles[1:] if roles and roles[0] == "system" else roles
    if not body or "system" in body:
        return "bad_role_order"
    expected = ["user", "assistant"] * (len(body) // 2 + 1)
    if body != expected[: len(body)] or body[-1] != "assistant":
        return "bad_role_order"
    return None


def content_reason(messages: list[dict]) -> str | None:
    if any(not m["content"].strip() for m in messages if m["role"] == "assistant"):
        return "empty_assistant"
    if any(not m["content"].strip() for m in messages if m["role"] == "user"):
        return "empty_user"
    return None


def validate_sources(sources: list[Source], count_tokens, max_tokens: int,
                     allowed_data_licenses: set[str]) -> tuple[ValidationResult, ValidationResult]:
    """Validate every SFT and preference source. Returns (sft_result, preference_result).

    `count_tokens(messages) -> int` renders with the base model's chat template and counts tokens;
    it raises when the template refuses the conversation.
    """
    sft, pref = ValidationResult(), ValidationResult()
    seen_ids: set[str] = set()
    for source in sources:
        result = sft if source.kind == "sft" else pref
        source_reason = None
        if source.do_not_train:
            source_reason = "do_not_train"
        elif source.license not in allowed_data_licenses:
            source_reason = "license_not_allowed"
        for path in source.files:
            file = origin_file(source, path)
            meta, file_problem = file_metadata(source, path)
            if file_problem:  # no usable source.yaml, sidecar or path: the whole file waits in quarantine
                reason, detail = file_problem
                result.quarantined.append({"source": source.name, "origin": {"file": file, "line": 0},
                                           "id": None, "reason": reason, "detail": detail})
                continue
            for line, item, parse_reason in iter_raw_items(path):
                base = {"source": source.name, "origin": {"file": file, "line": line}}
                try:
                    record, reason, detail = _checked(item, parse_reason or source_reason, source, meta, line,
                                                      seen_ids, count_tokens, max_tokens)
                except Exception as exc:  # a record no check foresaw: quarantined by type, never a failed step
                    record, reason, detail = None, "unreadable_record", f"{type(exc).__name__} while validating"
                if reason is not None:
                    ident = safe(item["id"]) if isinstance(item, dict) and isinstance(item.get("id"), str) else None
                    result.quarantined.append({**base, "id": ident, "reason": reason, "detail": detail})
                    continue
                seen_ids.add(record["id"])
                result.kept.append({**record, **base})
    return sft, pref


def _checked(item, reason, source: Source, meta: dict, line: int, seen_ids: set[str], count_tokens, max_tokens):
    """(record, None, None) for an item that passes every check, else (None, reason, detail)."""
    if reason is not None:
        return None, reason, DETAILS.get(reason)
    record, reason, detail = _to_record(item, source, meta, line)
    if reason is None and record["id"] in seen_ids:
        reason, detail = "duplicate_id", f"id {record['id']!r} already seen"
    if reason is None and source.kind == "sft":
        reason, detail = _template_reason(record["messages"], count_tokens, max_tokens)
    if reason is None and source.kind == "preference":
        reason, detail = _preference_reason(record, count_tokens, max_tokens)
    return (record, None, None) if reason is None else (None, reason, detail)


def _to_record(item, source: Source, meta: dict, line: int):
    if not isinstance(item, dict):
        return None, "not_an_object", f"expected a JSON object, got {type(item).__name__}"
    fmt = source.format or detect_format(item)
    allowed = SFT_FORMATS if source.kind == "sft" else PREFERENCE_FORMATS
    if fmt not in allowed:
        return None, "unknown_format", f"could not read as one of {', '.join(allowed)}"
    if not isinstance(item.get("id", ""), (str, int)) or not isinstance(item.get("task", ""), str):
        return None, "malformed_record", "id must be a string or integer and task a string"
    written = str(item.get("id") or f"{source.name}-{line:06d}")
    ident = safe(written)  # an id that holds PII is kept as its stable hash (identifiers.py)
    sidecar = meta.get(written, {})
    record_meta = {"task": sidecar.get("task") or item.get("task") or source.task,
                   "reviewed_by": safe(str(sidecar.get("reviewed_by") or source.reviewed_by)),
                   "contains_pii": bool(sidecar.get("contains_pii", False)),
                   "split_hint": sidecar.get("split_hint"), "license": source.license}
    try:
        fields, conversations = _convert(item, fmt, source.kind)
    except (ValueError, KeyError, TypeError) as exc:
        fallback = "malformed_preference" if source.kind == "preference" else "malformed_record"
        code = str(exc.args[0]) if isinstance(exc, ValueError) else fallback
        missing = f": missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else ""
        return None, code, f"format {fmt}{missing}"
    for messages in conversations:
        reason = role_order_reason(messages) or content_reason(messages)
        if reason:
            return None, reason, "roles: " + ",".join(safe(str(m["role"])) for m in messages)
    return {"id": ident, **fields, "meta": record_meta}, None, None


def _convert(item: dict, fmt: str, kind: str) -> tuple[dict, list[list[dict]]]:
    """The canonical fields of one item, and the full conversations they stand for (to check)."""
    if kind == "preference":
        prompt, chosen, rejected = to_preference(item, fmt)
        fields = {"messages": prompt, "chosen": chosen, "rejected": rejected}
        return fields, [prompt + [{"role": "assistant", "content": side}] for side in (chosen, rejected)]
    messages = to_messages(item, fmt)
    return {"messages": messages}, [messages]


def _template_reason(messages, count_tokens, max_tokens):
    try:
        n = count_tokens(messages)
    except Exception as exc:  # the tokenizer's chat template raised: it cannot render this
        return "template_error", f"{type(exc).__name__}: {exc}"[:200]
    if n > max_tokens:
        return "too_long", f"{n} tokens > max {max_tokens}"
    return None, None


def _preference_reason(record, count_tokens, max_tokens):
    for side in ("chosen", "rejected"):
        messages = record["messages"] + [{"role": "assistant", "content": record[side]}]
        reason, detail = _template_reason(messages, count_tokens, max_tokens)
        if reason:
            return reason, f"{side}: {detail}"
    if record["chosen"].strip() == record["rejected"].strip():
        return "chosen_equals_rejected", None
    return None, None


def refit_after_scrub(records: list[dict], kind: str, count_tokens, max_tokens: int) -> tuple[list[dict], list[dict]]:
    """(kept, too long): a placeholder such as <LOCATION> can take more tokens than the text it replaced, so a
    record the scrub changed is measured again, as training will see it. Unchanged records were measured
    at validation."""
    kept, dropped = [], []
    for record in records:
        if record.get("pii_found"):
            if kind == "preference":
                reason, detail = _preference_reason(record, count_tokens, max_tokens)
            else:
                reason, detail = _template_reason(record["messages"], count_tokens, max_tokens)
            if reason == "too_long":
                dropped.append({**record, "reason": "too_long", "detail": f"after PII placeholders: {detail}"})
                continue
        kept.append(record)
    return kept, dropped
