"""`ftassets releases`, `rollback`, `chat` and `serve`: the instance's release decisions as versions, making an
earlier release current again (recorded in Dagster with who, why and when), and talking to a release.
Bundles are kept by lib/release/versions.py; which release is current is read by lineage.current_release."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path


def add_parsers(sub) -> None:
    p = sub.add_parser("releases", help="every release decision as a version: decision, date, contract version, "
                                         "headline metrics, whether its bundle is kept, and which one is current")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=releases)
    p = sub.add_parser("rollback", help="make an earlier release current again (the champion candidates are held "
                                         "against, and what `chat` uses by default); recorded with who, why, when")
    p.add_argument("release", help="release name or run id (8+ characters) of a `release` decision")
    p.add_argument("--reason", required=True, help="why (kept in the Dagster event log)")
    p.add_argument("--by", help="who (default: the login name)")
    p.set_defaults(func=rollback)
    p = sub.add_parser("chat", help="talk to a release (default: the current one) with its chat template and "
                                     "decoding policy; offline")
    p.add_argument("release", nargs="?", default="current",
                   help="release name, run id (8+ characters), a serving bundle folder, or current (default)")
    p.add_argument("--task", default="default", help="use this task's decoding policy (default: the policy's default)")
    p.add_argument("--adapters", action="store_true",
                   help="the adapter stack on the base model instead of the merged weights")
    p.add_argument("--system", help="a system prompt for the conversation")
    p.add_argument("--message", action="append", help="say this and print the reply (repeatable; no prompt loop)")
    p.set_defaults(func=chat)
    p = sub.add_parser("serve", help="an OpenAI-compatible chat-completions endpoint on loopback over the current "
                                      "release and any named earlier ones (the request's `model` picks one)")
    p.add_argument("release", nargs="*", help="earlier releases to serve beside the current one (names or run ids)")
    p.add_argument("--host", default="127.0.0.1", help="loopback only: 127.0.0.1 (default), localhost or ::1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--adapters", action="store_true",
                   help="serve each release as its adapter stack on one shared base model (one base in memory) "
                        "instead of its merged weights")
    p.set_defaults(func=serve)


def _context():
    from ftassets.cli import _instance
    from ftassets.defs.platform.resources import default_resources

    return _instance(), default_resources()["store"]


def _rows(instance, store) -> list[dict]:
    from ftassets.defs.platform import lineage as lin
    from ftassets.lib.release import versions

    current = lin.current_release(instance) or {}
    checks = lin.bundle_checks(instance)
    rows = []
    for record in lin.releases(instance):
        row = lin.release_summary(record)
        kept = versions.version_dir(store.catalog.releases(), row["merged_weights_sha256"]) \
            if row["merged_weights_sha256"] else None
        row["bundle"] = str(kept) if kept is not None and kept.is_dir() else None
        row["bundle_checks"] = checks.get(row["merged_weights_sha256"], {}) if row["bundle"] else {}
        row["current"] = record.storage_id == current.get("storage_id")
        rows.append(row)
    return rows


def releases(args) -> int:
    instance, store = _context()
    rows = _rows(instance, store)
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return 0
    if not rows:
        print("no release decisions in this instance yet (ftassets run)")
        return 0
    print("| | release | decision | decided | contract | task success | gold pass | bundle | bundle checks | run |")
    print("|---|---|---|---|---|---:|---:|---|---|---|")
    for r in rows:
        head = r.get("headline") or {}
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"| {'current' if r['current'] else ''} | {r['release_name']} | {r['decision']} | {r['materialized_at']} "
              f"| {r.get('contract_version') or '-'} | {fmt(head.get('task_success'))} | {fmt(head.get('gold_pass_rate'))} "
              f"| {'kept' if r['bundle'] else '-'} | {_checks(r['bundle_checks'])} | {r['run_id'][:8]} |")
    return 0


def _checks(checks: dict[str, bool]) -> str:
    return ", ".join(f"{c} {'pass' if ok else 'FAIL'}" for c, ok in sorted(checks.items())) or "-"


def _find(rows: list[dict], name: str) -> dict | None:
    """The newest decision with this release name, or the one whose run id starts with `name` (8+ chars)."""
    return next((r for r in rows if r["release_name"] == name
                 or (len(name) >= 8 and str(r["run_id"]).startswith(name))), None)


def _offered(instance, store, target: dict) -> tuple[Path | None, str]:
    """(the kept bundle of a release decision, its name) or (None, why it is not offered): rejected by the
    gate, its bundle failed a check, or the kept bundle is missing or changed."""
    from ftassets.defs.platform import lineage as lin
    from ftassets.lib.release import versions

    if target["decision"] != "release":
        return None, f"{target['release_name']} (run {target['run_id'][:8]}) was rejected; it is not offered"
    checks = lin.bundle_checks(instance).get(target["merged_weights_sha256"], {})
    failed = sorted(check for check, passed in checks.items() if passed is False)
    if failed:
        return None, f"{target['release_name']}'s bundle failed {', '.join(failed)}; it is not offered"
    kept, problem = versions.find(store.catalog.releases(), target["merged_weights_sha256"])
    return (kept, target["release_name"]) if kept else (None, f"{target['release_name']} cannot be served: {problem}")


def rollback(args) -> int:
    from ftassets.defs.platform import lineage as lin

    instance, store = _context()
    rows = _rows(instance, store)
    target = _find(rows, args.release)
    if target is None:
        print(f"error: no release decision named {args.release!r} in this instance "
              f"(known: {', '.join(sorted({r['release_name'] for r in rows})) or 'none'})", file=sys.stderr)
        return 2
    kept, problem = _offered(instance, store, target)
    if kept is None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    current = lin.current_release(instance)
    if current and current.get("merged_weights_sha256") == target["merged_weights_sha256"]:
        print(f"{target['release_name']}: already current (same weights as {current['release_name']}); nothing recorded")
        return 0
    lin.record_rollback(instance, target, args.reason, args.by or getpass.getuser(), current)
    print(f"current release: {target['release_name']} (run {target['run_id'][:8]}, bundle {kept}); "
          f"was {(current or {}).get('release_name') or 'none'}; recorded in the Dagster event log of release_decision")
    return 0


def _bundle(instance, store, name: str) -> tuple[Path | None, str]:
    from ftassets.defs.platform import lineage as lin
    from ftassets.lib.release import versions

    if Path(name).is_dir():
        problem = versions.verify(Path(name))
        return (None, f"{name}: {problem}") if problem else (Path(name), name)
    target = lin.current_release(instance) if name == "current" else _find(_rows(instance, store), name)
    if target is None:
        return None, ("no release is current in this instance yet" if name == "current"
                      else f"no release decision named {name!r}")
    return _offered(instance, store, target)


def chat(args) -> int:
    from ftassets.lib.release.chat import Conversation

    instance, store = _context()
    bundle, label = _bundle(instance, store, args.release)
    if bundle is None:
        print(f"error: {label}", file=sys.stderr)
        return 2
    try:
        talk = Conversation(bundle, base_dir=store.artifact("base_model") if args.adapters else None,
                            task=args.task, system=args.system)
    except (KeyError, ValueError) as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    way = "adapter stack on the base" if args.adapters else "merged weights"
    print(f"chatting with {label} ({way}; task {args.task}: {talk.settings})", file=sys.stderr)
    if args.message:
        for text in args.message:
            print(talk.say(text))
        return 0
    interactive = sys.stdin.isatty()
    while True:
        try:
            text = input("you> " if interactive else "")
        except EOFError:
            return 0
        if text.strip() in ("/exit", "/quit"):
            return 0
        if text.strip():
            print(("model> " if interactive else "") + talk.say(text), flush=True)


def served_releases(instance, store, names: list[str], adapters: bool = False) -> tuple[dict, dict]:
    """({model name: Served}, {other release name: why it is not served}); the current release is served
    under its name and as `current`. A named release that cannot be served raises LookupError. With
    `adapters`, every release is its adapter stack on one shared base (the store's base_model)."""
    from ftassets.lib.release.server import Served, SharedBase

    bundles: dict = {}
    aliases = []
    for name in ["current", *names]:
        bundle, label = _bundle(instance, store, name)
        if bundle is None:
            raise LookupError(label)
        bundles.setdefault(label, bundle)
        if name == "current":
            aliases.append(label)
    unique = {}  # one model per bundle, whatever names point at it
    for label, bundle in bundles.items():
        unique.setdefault(bundle, label)
    try:
        shared = SharedBase(store.artifact("base_model"), {label: b for b, label in unique.items()}) if adapters else None
    except (ValueError, FileNotFoundError) as exc:
        raise LookupError(str(exc)) from None
    models = {bundle: Served(label, bundle, shared) for bundle, label in unique.items()}
    served = {label: models[bundle] for label, bundle in bundles.items()}
    served["current"] = served[aliases[0]]
    refused = {}
    for row in _rows(instance, store):
        if row["release_name"] not in served:
            refused.setdefault(row["release_name"], (
                f"rejected by the release gate (run {row['run_id'][:8]})" if row["decision"] != "release"
                else "a release this server was not started with (ftassets serve NAME)"))
    return served, refused


def serve(args) -> int:
    from ftassets.lib.release import server

    if args.host not in server.LOOPBACK:
        print(f"error: serve binds to loopback only (127.0.0.1, localhost, ::1), not {args.host!r}", file=sys.stderr)
        return 2
    instance, store = _context()
    try:
        served, refused = served_releases(instance, store, args.release, args.adapters)
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    way = "adapter stacks on one shared base" if args.adapters else "merged weights"
    print(f"serving {', '.join(served)} ({way}) on http://{args.host}:{args.port}/v1 (OpenAI chat completions)",
          file=sys.stderr)
    server.serve(server.build_app(served, refused), args.host, args.port)
    return 0
