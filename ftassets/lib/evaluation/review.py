"""Blind human review: A/B pairs of base and tuned replies with the model names hidden and the
order shuffled, a sealed key, and the win rate computed once graded files come back.

A reviewer copies `packet.jsonl` to `data/reviews/<packet_id>.jsonl` and sets `"preferred"` on each
row to "A", "B" or "tie". The key stays with the artifacts; only its sha256 is shown, so the grader
cannot see it and nobody can swap it afterwards unnoticed.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

GRADES = {"A", "B", "tie"}


class ReviewError(ValueError):
    """A graded review file that cannot be used, with the file and line."""


def make_packet(test: list[dict], base_replies: dict[str, str], tuned_replies: dict[str, str], tuned_key: str,
                sample_size: int, seed: int, blind: bool = True) -> tuple[list[dict], dict]:
    """(packet rows, key). Items are drawn from the frozen test set with a seeded RNG."""
    rng = random.Random(seed)
    items = [t for t in test if t["id"] in base_replies and t["id"] in tuned_replies]
    chosen = sorted(rng.sample(items, min(sample_size, len(items))), key=lambda t: t["id"])
    rows, key = [], {}
    for n, item in enumerate(chosen, start=1):
        pair = f"pair-{n:03d}"
        tuned_first = rng.random() < 0.5 if blind else False
        a, b = (tuned_key, "base_model") if tuned_first else ("base_model", tuned_key)
        replies = {"base_model": base_replies[item["id"]], tuned_key: tuned_replies[item["id"]]}
        rows.append({"pair_id": pair, "task": item["task"], "prompt": item["prompt"][-1]["content"],
                     "reply_a": replies[a], "reply_b": replies[b], "preferred": None, "comment": ""})
        key[pair] = {"A": a, "B": b, "item_id": item["id"]}
    packet_id = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:12]
    for row in rows:
        row["packet_id"] = packet_id
    return rows, {"packet_id": packet_id, "tuned_model": tuned_key, "blind": blind, "pairs": key}


def graded_file(reviews_dir: Path, packet_id: str) -> Path:
    """Where a graded copy of packet `packet_id` is dropped (the human_review asset and its sensor look here)."""
    return Path(reviews_dir) / f"{packet_id}.jsonl"


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def read_grades(path: Path, key: dict) -> dict[str, str]:
    """{pair_id: grade} from a graded packet; every problem names the file and line."""
    grades = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReviewError(f"{where}: not valid JSON ({exc.msg})") from exc
        if row.get("packet_id") != key["packet_id"]:
            raise ReviewError(f"{where}: packet_id {row.get('packet_id')!r} is not {key['packet_id']!r}")
        pair = row.get("pair_id")
        if pair not in key["pairs"]:
            raise ReviewError(f"{where}: unknown pair_id {pair!r}")
        if pair in grades:
            raise ReviewError(f"{where}: pair_id {pair} graded twice")
        grade = row.get("preferred")
        if grade is None:
            continue  # not graded yet
        if grade not in GRADES:
            raise ReviewError(f"{where}: preferred must be one of {sorted(GRADES)} or null, got {grade!r}")
        grades[pair] = grade
    return grades


def grade_rows(rows: list[dict], grades: dict[str, str], reviewer: str, earlier: dict[str, str] | None = None
               ) -> list[dict]:
    """The packet rows with `preferred` set from grades entered in the UI (a config form), on top of the grades
    of an earlier graded file (`earlier`; a pair graded again takes the new grade). Unknown pairs and grades
    outside A / B / tie are refused with the pair named."""
    known = {r["pair_id"] for r in rows}
    for pair, grade in grades.items():
        if pair not in known:
            raise ReviewError(f"grades: unknown pair_id {pair!r} (this packet has {', '.join(sorted(known))})")
        if grade not in GRADES:
            raise ReviewError(f"grades: {pair}: preferred must be one of {sorted(GRADES)}, got {grade!r}")
    merged = {**(earlier or {}), **grades}
    return [{**r, "preferred": merged.get(r["pair_id"]), **({"reviewer": reviewer} if reviewer else {})}
            for r in rows]


def win_rate(grades: dict[str, str], key: dict) -> dict:
    """Tuned wins (ties count half) over graded pairs, unblinded with the key."""
    tuned = key["tuned_model"]
    wins = ties = losses = 0
    for pair, grade in grades.items():
        if grade == "tie":
            ties += 1
        elif key["pairs"][pair][grade] == tuned:
            wins += 1
        else:
            losses += 1
    graded = wins + ties + losses
    return {"graded": graded, "pairs": len(key["pairs"]), "tuned_wins": wins, "ties": ties, "base_wins": losses,
            "tuned_win_rate": round((wins + 0.5 * ties) / graded, 4) if graded else None}
