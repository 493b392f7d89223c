"""What two releases differ in: the evidence each release decision keeps, and `ftassets diff`.

The artifacts folder holds only the latest split files and eval report, so every release decision also
writes a compact evidence file of its own (`release_history/<release name>@<run>/evidence.json`): the
manifest, each training and validation record's source, task and content hash, each frozen-test
item's outcome for the tuned model and the base, and for every test item the tuned model fails, its
nearest training examples by MinHash (the usual suspects when an item is lost). Two evidence files
are enough to say, without the Dagster instance, what changed between the releases: source versions,
example ids added, removed or changed per source and task, settings and code, every gate rule's value,
and the frozen-test items won and lost."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from ftassets.lib.core.files import sha256_json, write_json_atomic

EVIDENCE = "evidence.json"
NEIGHBOURS = 3
MIN_SIMILARITY = 0.1  # below this MinHash similarity a training example is no neighbour worth naming


def build_evidence(manifest: dict, report: dict, splits: dict[str, list[dict]], test: list[dict], tuned: str,
                   text_of, hash_of) -> dict:
    """The evidence of one release decision (see the module docstring). `splits` maps a role (train,
    validation) to its records, `test` is the frozen test set, `report` the eval report the decision read;
    `text_of(record)` is the prompt text and `hash_of(text)` its datasketch MinHash (curation's own, so
    "near" means what it means to decontamination)."""
    records = {role: {r["id"]: {"source": r.get("source"), "task": (r.get("meta") or {}).get("task"),
                                "sha256": sha256_json(r["messages"])} for r in rows}
               for role, rows in splits.items()}
    outcomes = {model: {i["id"]: bool(i["scores"]["success"]) for i in report["models"][model]["items"]}
                for model in (tuned, "base_model") if model in report["models"]}
    failed_ids = {i for i, ok in outcomes.get(tuned, {}).items() if not ok}
    neighbours = nearest_training([r for r in test if r["id"] in failed_ids], splits.get("train", []),
                                  text_of, hash_of)
    return {"release_name": manifest["release_name"], "run_id": manifest.get("run_id"),
            "created_at": manifest.get("created_at"), "decided_at": time.time(), "decision": manifest["decision"], "tuned_model": tuned, "manifest": manifest, "records": records,
            "test_outcomes": outcomes, "neighbours": neighbours}


def nearest_training(items: list[dict], train: list[dict], text_of, hash_of) -> dict[str, list[dict]]:
    """{item id: up to NEIGHBOURS training records whose prompt is most similar to the item's (MinHash
    LSH Forest over the training prompts), each with id, source and estimated Jaccard similarity}."""
    from datasketch import MinHashLSHForest

    if not items or not train:
        return {}
    forest, hashes = MinHashLSHForest(num_perm=128), {}
    for record in train:
        hashes[record["id"]] = hash_of(text_of(record))
        forest.add(record["id"], hashes[record["id"]])
    forest.index()
    by_id = {r["id"]: r for r in train}
    out = {}
    for item in items:
        query = hash_of(text_of(item))
        candidates = [(query.jaccard(hashes[i]), i) for i in forest.query(query, NEIGHBOURS * 4)]
        best = sorted((c for c in candidates if c[0] >= MIN_SIMILARITY), reverse=True)[:NEIGHBOURS]
        out[item["id"]] = [{"id": i, "source": by_id[i].get("source"), "similarity": round(s, 3)} for s, i in best]
    return out


def write_evidence(folder: Path, evidence: dict) -> Path:
    """One folder per decision: the same evaluated model decided again (under another contract) is
    another decision, so the run id is part of the name."""
    run = (evidence.get("run_id") or "")[:8]
    return write_json_atomic(Path(folder) / f"{evidence['release_name']}{'@' + run if run else ''}" / EVIDENCE,
                             evidence)


def releases(folder: Path) -> list[dict]:
    """Every release decision's evidence under `folder`, oldest first."""
    found = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).glob(f"*/{EVIDENCE}"))]
    return sorted(found, key=lambda e: e.get("decided_at") or 0)


def resolve(folder: Path, name: str) -> dict:
    """A release decision by release name (its latest decision), by run id (8 characters or more), or
    `latest` / `previous` (by decision time)."""
    known = releases(folder)
    if name in ("latest", "previous"):
        index = -1 if name == "latest" else -2
        if len(known) < -index:
            raise LookupError(f"{folder}: {len(known)} release decision(s) recorded, no {name!r} one")
        return known[index]
    for evidence in reversed(known):
        if evidence["release_name"] == name or (len(name) >= 8 and (evidence.get("run_id") or "").startswith(name)):
            return evidence
    names = ", ".join(e["release_name"] for e in known) or "none"
    raise LookupError(f"no release decision named {name!r} under {folder} (recorded: {names})")


def diff(a: dict, b: dict) -> dict:
    """What changed from release `a` to release `b`."""
    return {"from": _head(a), "to": _head(b), "sources": _sources(a, b), "examples": _examples(a, b),
            "settings": _settings(a, b), "rules": _rules(a, b), "test_items": _flips(a, b)}


def _head(e: dict) -> dict:
    return {"release_name": e["release_name"], "run_id": e.get("run_id"), "decision": e["decision"],
            "created_at": e.get("created_at")}


def _sources(a: dict, b: dict) -> dict:
    def versions(e):
        return {name: spec.get("data_version") for name, spec in (e["manifest"]["data"].get("sources") or {}).items()}

    va, vb = versions(a), versions(b)
    return {name: {"from": va.get(name), "to": vb.get(name)} for name in sorted(set(va) | set(vb))
            if va.get(name) != vb.get(name)}


def _examples(a: dict, b: dict) -> dict:
    """Per role, then per (source, task): ids added, removed and changed (same id, other content)."""
    out = {}
    for role in sorted(set(a["records"]) | set(b["records"])):
        ra, rb = a["records"].get(role, {}), b["records"].get(role, {})
        groups: dict[str, Counter] = defaultdict(Counter)
        ids: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        for rid in sorted(set(ra) | set(rb)):
            change = ("added" if rid not in ra else "removed" if rid not in rb
                      else "changed" if ra[rid]["sha256"] != rb[rid]["sha256"] else None)
            if change:
                spec = rb.get(rid) or ra[rid]
                group = f"{spec['source']} / {spec['task']}"
                groups[group][change] += 1
                ids[group][change].append(rid)
        out[role] = {g: {**{k: groups[g][k] for k in ("added", "removed", "changed")},
                         "ids": {k: v[:20] for k, v in ids[g].items()}} for g in sorted(groups)}
    return out


def _settings(a: dict, b: dict) -> dict:
    """Training settings, contract and code that differ ({path: {from, to}})."""
    def flat(e):
        m = e["manifest"]
        picked = {"contract_version": m.get("contract_version"), "contract": m.get("contract"),
                  "training": {k: (v or {}).get("config") for k, v in (m.get("training") or {}).items()},
                  "code": {k: m.get("reproduce", {}).get(k) for k in ("git_commit", "python", "package_versions")},
                  "base_model": (m.get("base_model") or {}).get("weights_sha256")}
        return dict(_flatten(picked))

    fa, fb = flat(a), flat(b)
    return {k: {"from": fa.get(k), "to": fb.get(k)} for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def _flatten(value, prefix: str = ""):
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def _rules(a: dict, b: dict) -> list[dict]:
    ra = {r["rule"]: r for r in a["manifest"].get("rules", [])}
    rb = {r["rule"]: r for r in b["manifest"].get("rules", [])}
    return [{"rule": name, "from": (ra.get(name) or {}).get("value"), "to": (rb.get(name) or {}).get("value"),
             "threshold": (rb.get(name) or ra.get(name) or {}).get("threshold"),
             "passed": [(ra.get(name) or {}).get("passed"), (rb.get(name) or {}).get("passed")]}
            for name in list(dict.fromkeys([*ra, *rb]))]


def _flips(a: dict, b: dict) -> dict:
    """Frozen-test items the tuned model won or lost from `a` to `b`; a lost item names its nearest
    training examples in `b`."""
    oa, ob = a["test_outcomes"].get(a["tuned_model"], {}), b["test_outcomes"].get(b["tuned_model"], {})
    common = sorted(set(oa) & set(ob))
    won = [i for i in common if ob[i] and not oa[i]]
    lost = [{"id": i, "nearest_training": b.get("neighbours", {}).get(i, [])} for i in common if oa[i] and not ob[i]]
    return {"compared": len(common), "won": won, "lost": lost,
            "only_in_one": sorted(set(oa) ^ set(ob))}


def render(d: dict) -> str:
    """`ftassets diff` as text."""
    lines = [f"{d['from']['release_name']} ({d['from']['decision']}) -> {d['to']['release_name']} "
             f"({d['to']['decision']})", "", "sources:"]
    lines += [f"  {name}: {v['from'] or '-'} -> {v['to'] or '-'}" for name, v in d["sources"].items()] or ["  unchanged"]
    lines += ["", "examples (added / removed / changed):"]
    for role, groups in d["examples"].items():
        lines += [f"  {role} {group}: +{g['added']} -{g['removed']} ~{g['changed']}" for group, g in groups.items()]
    if not any(d["examples"].values()):
        lines.append("  unchanged")
    lines += ["", "settings and code:"]
    lines += [f"  {k}: {_short(v['from'])} -> {_short(v['to'])}" for k, v in d["settings"].items()] or ["  unchanged"]
    lines += ["", "rules (from -> to, threshold):"]
    lines += [f"  {r['rule']}: {r['from']} -> {r['to']} ({r['threshold']})"
              + ("" if r["passed"][0] == r["passed"][1] else f"  passed {r['passed'][0]} -> {r['passed'][1]}")
              for r in d["rules"]]
    flips = d["test_items"]
    lines += ["", f"frozen test items ({flips['compared']} compared): won {len(flips['won'])}, lost {len(flips['lost'])}"]
    lines += [f"  won {i}" for i in flips["won"]]
    for item in flips["lost"]:
        near = ", ".join(f"{n['id']} ({n['source']}, {n['similarity']})" for n in item["nearest_training"]) or "none"
        lines.append(f"  lost {item['id']}; nearest training examples: {near}")
    return "\n".join(lines) + "\n"


def _short(value, n: int = 60) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= n else text[:n - 3] + "..."
