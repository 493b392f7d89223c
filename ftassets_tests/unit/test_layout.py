"""The layout rules the code relies on: `lib/` is plain Python (no Dagster), grouped by stage, and a
stage imports only itself and `core`; so a stage can be read, tested and changed on its own."""

import ast
from pathlib import Path

from ftassets_tests.conftest import REPO

LIB = REPO / "ftassets" / "lib"
STAGES = {"core", "governance", "curation", "training", "evaluation", "release"}


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _lib_modules() -> list[Path]:
    return sorted(p for p in LIB.rglob("*.py") if p.name != "__init__.py" or p.parent != LIB)


def test_lib_is_grouped_by_stage():
    loose = [p.name for p in LIB.glob("*.py") if p.name != "__init__.py"]
    assert loose == [], f"modules directly under lib/ (put each in a stage folder): {loose}"
    assert {p.name for p in LIB.iterdir() if p.is_dir() and p.name != "__pycache__"} == STAGES


def test_lib_never_imports_dagster():
    found = [f"{p.relative_to(REPO)}:{line} imports {name}" for p in _lib_modules() for line, name in _imports(p)
             if name.split(".")[0] in ("dagster", "dagster_pipes", "dagster_k8s", "dagster_postgres")
             or name.startswith(("ftassets.defs", "ftassets.definitions", "ftassets.cli", "ftassets_tests"))]
    assert found == []


def test_stages_import_only_themselves_and_core():
    found = []
    for path in _lib_modules():
        stage = path.relative_to(LIB).parts[0]
        for line, name in _imports(path):
            parts = name.split(".")
            if parts[:2] == ["ftassets", "lib"] and len(parts) > 2 and parts[2] not in (stage, "core"):
                found.append(f"{path.relative_to(REPO)}:{line} ({stage}) imports {name}")
    assert found == []


def _artifact_file_literals(path: Path, names: set[str], folders: set[str]) -> list[str]:
    """String constants in `path` that name an artifact file: alone, or inside an artifact folder."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            parts = node.value.replace("\\", "/").split("/")
            if parts[-1] in names and (len(parts) == 1 or parts[-2] in folders):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    return found


def test_artifact_file_names_are_spelled_only_in_the_catalog():
    from ftassets.lib.core import catalog

    names = {name.rsplit("/", 1)[-1] for files in catalog.FILES.values() for name in files.values() if "." in name}
    names.add(catalog.CHECKPOINT_FINGERPRINT)
    folders = {*catalog.FILES, "artifacts", *(name.split("/")[0] for name in catalog.FILES["serving_bundle"].values())}
    # test_lib_object_store builds folders of its own to test copying; its file names are arbitrary
    skip = {Path(catalog.__file__), Path(__file__), REPO / "ftassets_tests/unit/test_lib_object_store.py"}
    sources = [p for folder in ("ftassets", "benchmarks", "scripts", "ftassets_tests") for p in (REPO / folder).rglob("*.py")]
    found = [hit for p in sources if p not in skip for hit in _artifact_file_literals(p, names, folders)]
    assert found == []
    assert _artifact_file_literals(REPO / "ftassets_tests/unit/test_lib_object_store.py", names, folders)  # it can fail
