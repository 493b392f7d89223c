"""Releases as versions: every serving bundle a release produced, kept side by side.

`serving_bundle/` holds the newest bundle only; each one is also kept under
`releases/<first 16 hex of its merged weights' sha256>/`, so an earlier release can be made current
again (`ftassets rollback`), chatted with and served after a newer one replaced the bundle. Keyed by
weights, not by release name: the same model decided again under another contract is one bundle.
Files are copied and made read-only, not hard-linked: a link would let an edit of the newest bundle
in place change every release that shares the file. A kept bundle is used only after every file matches the `bundle_files.json`
recorded when it was bundled; a changed or missing file is an error naming it, never a silent fallback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ftassets.lib.core.catalog import file_name
from ftassets.lib.core.files import atomic_directory
from ftassets.lib.release.serving import bundle_files

KEY_LENGTH = 16


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def version_dir(folder: Path, weights_sha256: str) -> Path:
    return Path(folder) / weights_sha256[:KEY_LENGTH]


def keep(bundle: Path, folder: Path) -> Path:
    """Keep `bundle` (a verified serving bundle) under `folder`; the kept folder. A bundle already kept
    with the same files is left as it is."""
    bundle = Path(bundle)
    recorded = read_json(bundle / file_name("serving_bundle", "files"))
    weights = recorded[file_name("serving_bundle", "model_weights")]
    target = version_dir(folder, weights)
    if target.is_dir() and verify(target) is None and read_json(target / file_name("serving_bundle", "files")) == recorded:
        return target
    with atomic_directory(target) as staging:
        for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
            dest = staging / path.relative_to(bundle)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
            dest.chmod(0o444)
        problem = verify(staging)  # before the swap: a bundle that does not verify is never kept
        if problem:
            raise ValueError(f"{bundle}: the bundle does not verify: {problem}")
    return target


def verify(kept: Path) -> str | None:
    """None when every file recorded in the bundle's `bundle_files.json` is present with its sha256 and no
    other file is there; else what is wrong (file names only)."""
    record = Path(kept) / file_name("serving_bundle", "files")
    if not record.is_file():
        return f"no {record.name}"
    recorded = read_json(record)
    found = bundle_files(Path(kept))
    found.pop(record.name, None)
    changed = sorted(n for n in recorded if found.get(n) != recorded[n])
    extra = sorted(set(found) - set(recorded))
    if changed or extra:
        return "; ".join(part for part in (f"changed or missing: {', '.join(changed)}" if changed else "",
                                           f"not in the record: {', '.join(extra)}" if extra else "") if part)
    return None


def find(folder: Path, weights_sha256: str | None) -> tuple[Path | None, str | None]:
    """(the kept bundle of these merged weights, None) or (None, why it cannot be used)."""
    if not weights_sha256:
        return None, "the decision recorded no merged weights (made before releases were kept)"
    kept = version_dir(folder, weights_sha256)
    if not kept.is_dir():
        return None, f"no kept bundle at {kept} (serving_bundle was not materialized for it)"
    problem = verify(kept)
    if problem:
        return None, f"{kept}: {problem}"
    recorded = read_json(kept / file_name("serving_bundle", "files"))
    if recorded.get(file_name("serving_bundle", "model_weights")) != weights_sha256:
        return None, f"{kept}: holds other weights than {weights_sha256[:12]}"
    return kept, None
