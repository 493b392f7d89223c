"""Atomic file and directory writes, content hashes and JSONL helpers.

Every artifact the loop produces is written through these functions, so a crash never leaves a
half-written file where a downstream stage would read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from ftassets.lib.core.errors import GovernanceError


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(root: Path) -> str:
    """Hash of every file's relative path and content under `root`, independent of mtime."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def sha256_json(obj) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode())


# every temporary name this project makes: its writer's host (hashed) and pid inside, so a cleanup
# never touches a live write of another process, nor any write of another machine on shared storage
TEMP = re.compile(r"^\..*\.ftmp-([0-9a-f]{8})-(\d+)-")


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temp_prefix(name: str, kind: str = "") -> str:
    """The name prefix of a temporary file or folder for `name`: hidden, marked, owned by this process."""
    return f".{name}.ftmp-{_host()}-{os.getpid()}-{kind}"


def is_temp(name: str) -> bool:
    return TEMP.match(name) is not None


def remove_stale_temp(root: Path) -> list[Path]:
    """Remove the temporary files and folders under `root` whose writing process on this machine is gone
    (a crash or a kill between write and rename); live writes and other machines' are left alone.
    Returns what was removed."""
    removed = []
    for path in sorted(Path(root).rglob(".*")) if Path(root).is_dir() else []:
        match = TEMP.match(path.name)
        if match and match.group(1) == _host() and not _running(int(match.group(2))) and path.exists():
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def dumps_jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)


def write_jsonl_atomic(path: Path, records: Iterable[dict]) -> Path:
    return write_text_atomic(path, dumps_jsonl(records))


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file this project wrote; a bad line is an error naming file and line."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc
    return out


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a fresh staging directory; on success it replaces `target` in one rename.

    On failure the staging directory is removed and `target` keeps its previous content.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=temp_prefix(target.name, "staging-")))
    staging.chmod(0o755)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = None
    if target.exists():
        retired = target.parent / temp_prefix(target.name, "retired")
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(target, retired)
    os.replace(staging, target)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def load_yaml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise GovernanceError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise GovernanceError(f"{path}: invalid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise GovernanceError(f"{path}: expected a mapping at the top level")
    return data
