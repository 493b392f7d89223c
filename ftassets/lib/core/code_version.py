"""Code versions from source: a stage's code version is the hash of its module and of every ftassets
module it imports, transitively (found by reading the imports, including ones inside functions).
Editing a curation filter therefore changes the code version of exactly the stages that use it, and
Dagster marks their artifacts stale; a comment edit elsewhere changes nothing."""

import ast
import hashlib
from pathlib import Path

PACKAGE = "ftassets"
ROOT = Path(__file__).resolve().parents[2]  # the ftassets package folder


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path) -> set[Path]:
    """ftassets modules a file imports (`import a.b`, `from a.b import c`, where c may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            module = _module_file(name)
            if module is not None and module.name != "__init__.py":
                found.add(module)
    return found


def module_closure(path: Path, extra: tuple[str, ...] = ()) -> list[Path]:
    """`path` plus every ftassets module it reaches through imports (and the named `extra` modules,
    for code it runs without importing: a training recipe started in a subprocess)."""
    todo = [Path(path).resolve()] + [p for p in (_module_file(m) for m in extra) if p is not None]
    seen: set[Path] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(_imported(current) - seen)
    return sorted(seen)


def code_version(path: Path, extra: tuple[str, ...] = ()) -> str:
    """sha256 (first 16 hex) over the relative path and source of every module in the closure."""
    digest = hashlib.sha256()
    for module in module_closure(path, extra):
        digest.update(str(module.relative_to(ROOT)).encode() + b"\0" + module.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
