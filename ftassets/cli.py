"""The `ftassets` command: run the whole loop, re-freeze the test set, show an asset's lineage, audit a
release (its exact upstream chain, sources and checks, read from the Dagster instance); list releases,
roll back and chat (cli_releases.py)."""

from __future__ import annotations

import argparse
import functools
import json
import operator
import os
import sys
from pathlib import Path

INSTANCES = ("sqlite", "postgres")
FOLDER_HELP = "the data folder (default: FTASSETS_DATA_DIR, else the bundled data/)"


def instance_home() -> str:
    """DAGSTER_HOME if set; otherwise by FTASSETS_INSTANCE: `sqlite` (default, the repository root's
    dagster.yaml) or `postgres` (deploy/postgres/dagster.yaml, connection from FTASSETS_PG_* env vars)."""
    if os.environ.get("DAGSTER_HOME"):
        return os.environ["DAGSTER_HOME"]
    kind = os.environ.get("FTASSETS_INSTANCE", "sqlite")
    if kind not in INSTANCES:
        raise SystemExit(f"FTASSETS_INSTANCE must be one of {', '.join(INSTANCES)}, got {kind!r}")
    root = Path(__file__).resolve().parents[1]
    return str(root if kind == "sqlite" else root / "deploy" / kind)


def _instance():
    import dagster as dg

    os.environ["DAGSTER_HOME"] = instance_home()
    return dg.DagsterInstance.get()


def _instance_for_runs():
    """The instance, with runs of earlier commands whose process died marked failed (defs/platform/runs.py)."""
    from ftassets.defs.platform.runs import fail_dead_runs

    instance = _instance()
    for run_id in fail_dead_runs(instance):
        print(f"run {run_id}: its process died (killed or out of memory); marked failed", file=sys.stderr)
    return instance


def observe_sources(instance) -> dict[str, str]:
    """Record each raw source's content hash (as the UI's "Observe sources" does): the run's lineage
    then names the source versions it used. Returns {source: data version}."""
    from ftassets.defs.curation.cleaning import observe_sources as observe
    from ftassets.defs.platform.resources import default_resources

    resources = default_resources()
    return observe(instance, resources["store"], resources["curation"])


def run(args) -> int:
    """Materialize the complete asset graph (or a selection) into the persistent instance."""
    import dagster as dg

    from ftassets.definitions import build_definitions
    from ftassets.defs.platform.resources import claim_instance, default_data_dir, default_resources
    from ftassets.defs.platform.runs import process_tags
    from ftassets.defs.platform.sensors import LOOP_JOB
    from ftassets.lib.core.errors import GovernanceError

    defs = build_definitions()  # for the data folder and resources the environment names now

    run_config = {}
    if args.config:
        import yaml

        run_config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
    try:
        _, names = parse_selection(args.select, defs)
    except SelectionError as exc:
        print(exc, file=sys.stderr)
        return 2
    run_config = _config_for_selection(run_config, None if args.select.strip() == "*" else names)
    instance = _instance_for_runs()
    try:
        claim_instance(instance, default_data_dir())  # before observing: sources of another folder never enter it
    except GovernanceError as exc:
        print(exc, file=sys.stderr)
        return 2
    observe_sources(instance)
    # the loop's named job (a subset of it for --select): the run can be re-executed from the UI
    keys = None if args.select.strip() == "*" else [dg.AssetKey.from_user_string(n) for n in sorted(names)]
    result = defs.get_job_def(LOOP_JOB).execute_in_process(
        run_config=run_config, instance=instance, asset_selection=keys, raise_on_error=False,
        tags={"ftassets/entrypoint": "cli", **process_tags()})
    store = default_resources()["store"]
    manifest_path = store.path("release_decision", "manifest")
    report_path = store.path("eval_report", "markdown")
    materialized = sorted({e.asset_key.to_user_string() for e in result.get_asset_materialization_events()})
    print(f"\nrun {result.run_id}: {'succeeded' if result.success else 'FAILED'}; "
          f"materialized {len(materialized)} assets: {', '.join(materialized)}")
    for event in result.all_events:  # what stopped the run, in one line per failed step
        if event.is_step_failure and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:  # Dagster wraps the asset's own exception
                error = error.cause
            if error.cls_name != "DagsterAssetCheckFailedError":  # a failed check is printed below, with its value
                print(f"step FAILED: {event.step_key}: {error.message.strip() or 'see the run in the UI'}")
    for event in result.get_asset_check_evaluations():
        if not event.passed:
            shown = {k: getattr(v, "value", v) for k, v in event.metadata.items() if k in ("value", "threshold")}
            print(f"check FAILED: {event.asset_key.to_user_string()}:{event.check_name}"
                  + "".join(f" {k} {v}" for k, v in shown.items()))
    if manifest_path.is_file() and "release_decision" in materialized:
        manifest = json.loads(manifest_path.read_text())
        print(f"\nRELEASE DECISION: {manifest['decision'].upper()}")
        for rule in manifest["rules"]:
            mark = "pass" if rule["passed"] else "FAIL"
            interval = rule.get("interval")
            print(f"  [{mark}] {rule['rule']}: {rule['value']}"
                  + (f" [{interval[0]}, {interval[1]}]" if interval else "")
                  + f" ({rule.get('kind', 'threshold')} {rule['threshold']}"
                  + (f", min. detectable {rule['mde']}" if rule.get("mde") is not None else "") + ")"
                  + (f": {rule['why']}" if rule.get("why") and (not rule["passed"] or rule.get("underpowered")) else ""))
        print(f"eval report:      {report_path}")
        print(f"release manifest: {manifest_path}")
        print(f"model card:       {store.path('release_decision', 'model_card')}")
        if "serving_bundle" in materialized:
            print(f"serving bundle:   {store.artifact('serving_bundle')}")
        if manifest["decision"] != "release":
            return 2
    return 0 if result.success else 1


class SelectionError(ValueError):
    """A --select text that names no asset, or cannot be read."""


def parse_selection(text: str, defs):
    """`--select` as Dagster reads it (`*a`, `a+`, `key:a or group:b`), plus what people type: a comma-
    separated list (`a,b`) and `or` between legacy terms (`*a or *b`). `*` is the whole loop (the settings
    sweep apart). Returns (AssetSelection, asset names); a bad text is a SelectionError saying why."""
    import dagster as dg
    from dagster._core.errors import DagsterError

    from ftassets.defs.sweep import main_loop

    def one(term: str):
        try:
            return dg.AssetSelection.from_coercible(term)
        except DagsterError:
            pieces = [p.strip() for p in term.split(" or ")]
            if len(pieces) > 1 and all(pieces):
                return _union([one(p) for p in pieces])
            raise SelectionError(f"--select {text!r}: cannot read {term!r} (examples: 'sft_adapter', "
                                 f"'*frozen_test_set', 'eval_report+', 'a,b', 'group:curation')") from None

    graph = defs.resolve_asset_graph()
    terms = [t.strip() for t in text.split(",")]
    if text.strip() == "*":
        selection = main_loop()
    elif not all(terms):
        raise SelectionError(f"--select {text!r}: an empty name in the list")
    else:
        selection = _union([one(t) for t in terms])
    try:
        names = {key.to_user_string() for key in selection.resolve(graph)}
    except DagsterError as exc:
        raise SelectionError(f"--select {text!r}: {str(exc).splitlines()[0]}") from None
    if not names:
        raise SelectionError(f"--select {text!r} selects no asset")
    return selection, names


def _union(selections: list):
    return functools.reduce(operator.or_, selections)


def _config_for_selection(run_config: dict, names: set[str] | None) -> dict:
    """A run config file names ops for the whole graph; a run of a selection gets only the selected ones
    (Dagster rejects config for ops outside the job). `names` None: the whole loop."""
    if names is None or not run_config.get("ops"):
        return run_config
    return {**run_config, "ops": {op: c for op, c in run_config["ops"].items() if op in names}}


def sweep(args) -> int:
    """Run the data folder's settings sweep: register its trials (`sweep_plan`), train every trial whose
    result is missing or stale (one `sft_trial` partition per run), then choose (`sft_sweep`)."""
    import dagster as dg

    from ftassets.definitions import defs
    from ftassets.defs import sweep as sweep_defs
    from ftassets.defs.platform.resources import default_resources
    from ftassets.defs.platform.runs import process_tags

    instance, resources = _instance_for_runs(), default_resources()
    store = resources["store"]
    assets = list(defs.assets or []) + list(defs.asset_checks or [])

    def materialize(selection: str, partition_key: str | None = None):
        result = dg.materialize(assets, instance=instance, resources=resources, selection=selection,
                                partition_key=partition_key, raise_on_error=False,
                                tags={"ftassets/entrypoint": "cli-sweep", **process_tags()})
        if not result.success:
            failure = next((e for e in result.all_events if e.is_step_failure), None)
            error = failure.step_failure_data.error if failure else None
            print(f"{selection}{f' [{partition_key}]' if partition_key else ''} FAILED (run {result.run_id}): "
                  f"{error.message.strip() if error else 'see the run in the UI'}", file=sys.stderr)
        return result.success

    if not materialize("sweep_plan"):
        return 1
    for trial in sweep_defs.trials_to_run(store, rerun=args.rerun):
        print(f"trial {trial.key}: training", flush=True)
        if not materialize("sft_trial", trial.key):
            return 1
    if not materialize("sft_sweep"):
        return 1
    result = store.read_json("sft_sweep", "sweep")
    for row in result["grid"]:
        mark = "*" if row["key"] == result["chosen"] else " "
        print(f" {mark} {row['key']}: {result['metric']} {row['score']} at step {row['best_step']} "
              f"(validation loss {row['validation_loss']})")
    print(f"chosen on validation: {result['chosen']} (step {result['chosen_step']})\n"
          f"its settings as a run config for sft_adapter: {store.path('sft_sweep', 'run_config')}")
    return 0


def claim(args) -> int:
    """Point this Dagster instance at a data folder on purpose (its lineage so far stays, under the old folder)."""
    from ftassets.defs.platform.resources import claim_instance, default_data_dir

    instance = _instance()
    folder = str(Path(args.folder or default_data_dir()).resolve())
    before = claim_instance(instance, folder, repoint=True)
    print(f"instance {instance.root_directory} now serves {folder}" + (f" (was {before})" if before else ""))
    return 0


def init(args) -> int:
    """Scaffold a data folder: annotated governance templates, eval starters, raw/ (never over existing files)."""
    import shutil

    folder = Path(args.folder)
    if folder.exists() and any(folder.iterdir()):
        print(f"{folder} exists and is not empty: choose a new folder (nothing was written)", file=sys.stderr)
        return 2
    shutil.copytree(Path(__file__).parent / "templates" / "data_folder", folder, dirs_exist_ok=True)
    print(f"scaffolded {folder}:\n  governance/  base-model record, license policy, eval contract (one task: answer), "
          f"decoding policy, curation settings, owners\n  eval/        gold set and red-team starters, a general probe\n"
          f"  raw/         your sources, one folder each (raw/README.md)\n  run_config.yaml  a short CPU training budget\n"
          f"next: add a source under raw/, declare its task in governance/eval_contract.yaml, then\n"
          f"  ftassets check {folder}\n"
          f"  FTASSETS_DATA_DIR={folder} DAGSTER_HOME={folder.resolve()}/dagster_home ftassets run "
          f"--config {folder}/run_config.yaml")
    return 0


def add_source(args) -> int:
    """Add a source to the data folder (file or folder copied in, source.yaml written) with a dry-run report."""
    from ftassets.defs.platform.folder_check import add_source as add
    from ftassets.defs.platform.resources import default_data_dir
    from ftassets.lib.core.errors import GovernanceError

    try:
        report = add(Path(args.data or default_data_dir()), Path(args.path), args.name, args.license, args.kind,
                     args.task or "", args.provenance or f"added from {Path(args.path).name}", args.reviewed_by or "")
    except GovernanceError as exc:
        print(exc, file=sys.stderr)
        return 2
    formats = ", ".join(f"{k} {v}" for k, v in report["formats"].items()) or "none"
    print(f"added {report['folder']} ({', '.join(report['files'])}); formats detected: {formats}")
    print(f"dry run: {report['kept']} kept, {report['quarantined']} quarantined"
          + (f" ({', '.join(f'{k} {v}' for k, v in report['reasons'].items())})" if report["reasons"] else ""))
    for line in report["first_quarantined"]:
        print(f"  {line}")
    if report["tokens"]:
        t = report["tokens"]
        print(f"tokens per record (counted with {report['counted_with']}): min {t['min']}, median {t['median']}, "
              f"max {t['max']} (curation keeps up to {report['max_tokens']})")
    return 0


def check(args) -> int:
    """Check a data folder's governance and eval files and every source.yaml, without a Dagster run."""
    from ftassets.defs.platform.folder_check import check_folder
    from ftassets.defs.platform.resources import default_data_dir

    folder = Path(args.folder or default_data_dir())
    findings = check_folder(folder)
    for f in findings:
        print(f"{'ok  ' if f.ok else 'FAIL'} {f.file}: {f.message}")
    failed = sum(not f.ok for f in findings)
    print(f"{folder}: {failed} problem(s) in {len(findings)} checks" if failed else f"{folder}: all {len(findings)} "
          f"checks passed")
    return 1 if failed else 0


def freeze_test_set(args) -> int:
    """Re-select the frozen test set by its seeded rule (a deliberate, reviewed act with a reason)."""
    import dagster as dg

    from ftassets.definitions import defs
    from ftassets.defs.platform.resources import default_resources
    from ftassets.defs.platform.runs import process_tags

    if not args.reason.strip():
        print("--reason is required: say why the test set changes", file=sys.stderr)
        return 2
    assets = list(defs.assets or []) + list(defs.asset_checks or [])
    result = dg.materialize(assets, instance=_instance_for_runs(), resources=default_resources(),
                            selection="*frozen_test_set", raise_on_error=False,  # re-curated from the raw sources
                            run_config={"ops": {"frozen_test_set": {"config": {
                                "refreeze": True, "refreeze_reason": args.reason,
                                "keep_members": args.keep_members}}}},
                            tags={"ftassets/entrypoint": "cli", "ftassets/refreeze_reason": args.reason[:200],
                                  **process_tags()})
    print(f"run {result.run_id}: {'re-frozen' if result.success else 'FAILED'}")
    return 0 if result.success else 1


def lineage(args) -> int:
    """Print the latest materialization of an asset and, recursively, of everything upstream."""
    import dagster as dg

    from ftassets.definitions import defs

    instance = _instance()
    graph = defs.resolve_asset_graph()
    seen = set()

    def show(key: dg.AssetKey, depth: int):
        if graph.get(key).is_observable:
            observed = instance.fetch_observations(dg.AssetRecordsFilter(asset_key=key), limit=1000).records
            latest = {}
            for r in observed:  # newest first
                obs = r.asset_observation
                latest.setdefault(obs.partition, (obs.tags or {}).get("dagster/data_version"))
            parts = ", ".join(f"{k}={v}" for k, v in sorted(latest.items(), key=lambda kv: str(kv[0])))
            print(f"{'  ' * depth}{key.to_user_string()}  (observed source) {parts or 'never observed'}")
            return
        record = instance.get_latest_materialization_event(key)
        mat = record.asset_materialization if record else None
        version = (mat.tags or {}).get("dagster/data_version") if mat else None
        when = f"run {record.run_id[:8]}" if record else "never materialized"
        print(f"{'  ' * depth}{key.to_user_string()}  version={version}  {when}")
        if key in seen:
            return
        seen.add(key)
        for parent in sorted(graph.get(key).parent_keys, key=lambda k: k.to_user_string()):
            show(parent, depth + 1)

    show(dg.AssetKey(args.asset), 0)
    return 0


def diff(args) -> int:
    """Print what changed between two release decisions (their evidence under release_history/)."""
    from ftassets.defs.platform.resources import default_resources
    from ftassets.lib.release import history

    folder = default_resources()["store"].catalog.release_history()
    try:
        a, b = history.resolve(folder, args.a), history.resolve(folder, args.b)
    except LookupError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    changes = history.diff(a, b)
    sys.stdout.write(json.dumps(changes, indent=2) + "\n" if args.json else history.render(changes))
    return 0


def audit(args) -> int:
    """Print the exact upstream chain of a release (or asset) or, with --source, the releases that read a source."""
    from ftassets.defs.platform import lineage as lin
    from ftassets.lib.release import audit as audit_lib

    instance = _instance()
    if args.source:
        from ftassets.lib.curation.identifiers import safe

        written, _, version = args.source.partition("@")
        name = safe(written)  # a folder name that holds PII is recorded (and looked up) as its hash
        rows = lin.releases_using_source(instance, name, version or None)
        sys.stdout.write(json.dumps({"source": name, "version": version or None, "releases": rows}, indent=2) + "\n"
                         if args.json else audit_lib.render_source_usage(name + (f"@{version}" if version else ""), rows))
        return 0
    if not args.target:
        print("give a release name, run id or asset key (or --source NAME)", file=sys.stderr)
        return 2
    found = lin.find_target(instance, args.target)
    if found is None:
        print(f"{args.target}: no such release name, run id or materialized asset in this instance "
              f"(DAGSTER_HOME={os.environ.get('DAGSTER_HOME')})", file=sys.stderr)
        return 1
    key, storage_id = found
    report = lin.audit_report(instance, {key: storage_id}, label=args.target)
    sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n" if args.json
                     else audit_lib.render_markdown(report))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="ftassets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="materialize the whole loop and print the release decision")
    p.add_argument("--select", default="*", help="Dagster asset selection (default: the whole loop; the "
                                                   "settings sweep runs with `ftassets sweep`)")
    p.add_argument("--config", help="YAML run config (e.g. data/run_config.yaml, the demo's training budget)")
    p.set_defaults(func=run)
    p = sub.add_parser("claim", help="point this Dagster instance at a data folder on purpose (an instance serves "
                                      "one folder)")
    p.add_argument("folder", nargs="?", help=FOLDER_HELP)
    p.set_defaults(func=claim)
    p = sub.add_parser("init", help="scaffold a data folder (governance templates, eval starters, raw/)")
    p.add_argument("folder")
    p.set_defaults(func=init)
    p = sub.add_parser("add-source", help="copy a data file or folder in as a new source, write its source.yaml, "
                                           "and print a dry-run validation report")
    p.add_argument("path")
    p.add_argument("--name", required=True, help="the source's folder name under raw/")
    p.add_argument("--license", required=True, help="SPDX id; must be allowed for training data by the policy")
    p.add_argument("--kind", choices=["sft", "preference"], default="sft")
    p.add_argument("--task", help="the declared task of its records (a record's own task wins)")
    p.add_argument("--provenance", help="where the data comes from")
    p.add_argument("--reviewed-by", help="who checked it")
    p.add_argument("--data", help=FOLDER_HELP)
    p.set_defaults(func=add_source)
    p = sub.add_parser("check", help="check a data folder's governance and eval files and every source.yaml "
                                      "(no Dagster run)")
    p.add_argument("folder", nargs="?", help=FOLDER_HELP)
    p.set_defaults(func=check)
    p = sub.add_parser("sweep", help="choose SFT settings on the validation split: train every grid point of "
                                      "governance/sweep.yaml (a Dagster partition each) and pick the best")
    p.add_argument("--rerun", action="store_true", help="train every trial again, even those up to date")
    p.set_defaults(func=sweep)
    p = sub.add_parser("freeze-test-set", help="select a new frozen test set and rewrite its lock (needs --reason)")
    p.add_argument("--reason", required=True, help="why the test set changes (kept in the lock's history)")
    p.add_argument("--keep-members", action="store_true",
                   help="keep the same test items (ids) and lock their new content, e.g. after a scrubber change")
    p.set_defaults(func=freeze_test_set)
    p = sub.add_parser("lineage", help="show an asset's upstream lineage with data versions")
    p.add_argument("asset")
    p.set_defaults(func=lineage)
    p = sub.add_parser("diff", help="what changed between two release decisions: sources, examples per source "
                                     "and task, settings and code, every rule's value, frozen-test items won and lost")
    p.add_argument("a", nargs="?", default="previous", help="release name, or previous / latest (default previous)")
    p.add_argument("b", nargs="?", default="latest", help="release name, or previous / latest (default latest)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=diff)
    p = sub.add_parser("audit", help="a release's (or asset's) exact upstream chain: versions, runs, config, "
                                      "checks, source files with hashes and licenses")
    p.add_argument("target", nargs="?", help="release name, run id (8+ characters), asset key, or asset@storage_id")
    p.add_argument("--source", help="instead: list the releases that read this source (NAME or NAME@VERSION)")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.set_defaults(func=audit)
    from ftassets.cli_releases import add_parsers

    add_parsers(sub)  # releases, rollback, chat
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
