"""Artifacts on object storage (any fsspec URL: s3://, gs://, az://, file://, memory://).

The pipeline works on a local folder per artifact; an object store of record makes those folders
shareable between machines (run pods, GPU nodes, laptops). An artifact is published file by file and
then its manifest (relative path -> sha256) is written last: a reader trusts only what a manifest
lists, so a half-finished upload is never read. Fetching downloads into a staging folder, verifies
every file against the manifest, and swaps the folder into place in one rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import fsspec

from ftassets.lib.core.files import is_temp, sha256_file, temp_prefix

MANIFEST = "_ftassets_manifest.json"


class ObjectStoreError(RuntimeError):
    """An artifact in the object store does not match its manifest (or has none)."""


def local_manifest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of an artifact's files; temporary files of an unfinished write never count."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST and not any(is_temp(part) for part in p.relative_to(folder).parts)}


def _fs(url: str):
    return fsspec.core.url_to_fs(url)


def confined(key: str) -> bool:
    """A manifest key names a file inside its artifact: relative, POSIX, no '..', no drive or backslash."""
    parts = key.split("/")
    return (bool(key) and not key.startswith("/") and "\\" not in key and ":" not in parts[0]
            and all(part not in ("", ".", "..") for part in parts))


def remote_manifest(url: str) -> dict[str, str] | None:
    """The published manifest of the artifact at `url` (None if unpublished). A key that would reach
    outside the artifact's folder ('../x', '/etc/x') is an error naming it: nothing is written or
    deleted for a manifest that holds one."""
    fs, root = _fs(url)
    path = f"{root.rstrip('/')}/{MANIFEST}"
    if not fs.exists(path):
        return None
    files = json.loads(fs.cat_file(path))["files"]
    bad = sorted(k for k in files if not isinstance(k, str) or not confined(k))
    if bad:
        raise ObjectStoreError(f"{path}: key(s) outside the artifact folder: {', '.join(map(repr, bad[:5]))}")
    return files


def list_artifacts(url: str) -> list[str]:
    """Names of the published artifacts (folders with a manifest) under a store URL."""
    fs, root = _fs(url)
    if not fs.exists(root):
        return []
    names = (p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)
             if fs.exists(f"{p.rstrip('/')}/{MANIFEST}"))
    return sorted(n for n in names if confined(n) and not n.startswith("."))  # never a hidden or parent folder


def publish(folder: Path, url: str, files: dict[str, str] | None = None,
            before: dict[str, str] | None = None) -> dict[str, str]:
    """Upload `folder` to `url` (files first, manifest last); files the new manifest no longer lists are
    removed afterwards. `files` / `before`: the local and remote manifests when the caller has them
    already. Returns the manifest."""
    fs, root = _fs(url)
    root = root.rstrip("/")
    files = local_manifest(folder) if files is None else files
    before = (remote_manifest(url) or {}) if before is None else before
    for rel, digest in files.items():
        if before.get(rel) != digest:
            fs.makedirs(f"{root}/{Path(rel).parent.as_posix()}".rstrip("/."), exist_ok=True)
            fs.put_file(str(Path(folder) / rel), f"{root}/{rel}")
    fs.pipe_file(f"{root}/{MANIFEST}", json.dumps({"files": files}, sort_keys=True).encode())
    for rel in set(before) - set(files):
        fs.rm_file(f"{root}/{rel}")
    return files


def fetch(url: str, folder: Path) -> bool:
    """Make `folder` an exact copy of the published artifact at `url`. Returns False when it already
    was (nothing downloaded). Raises ObjectStoreError naming the file when a download does not match
    its manifest, leaving the local folder as it was."""
    files = remote_manifest(url)
    if files is None:
        raise ObjectStoreError(f"{url}: no {MANIFEST} (not a published artifact, or its upload never finished)")
    folder = Path(folder)
    if folder.is_dir() and local_manifest(folder) == files:
        return False
    fs, root = _fs(url)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(folder.name, "fetch-"), dir=folder.parent))
    try:
        for rel, digest in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(f"{root.rstrip('/')}/{rel}", str(target))
            if sha256_file(target) != digest:
                raise ObjectStoreError(f"{url}/{rel}: sha256 {sha256_file(target)[:16]}... does not match the "
                                       f"manifest's {digest[:16]}...")
        if folder.exists():
            old = folder.with_name(temp_prefix(folder.name, "replaced"))
            os.replace(folder, old)
            os.replace(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return True
