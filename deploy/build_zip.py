"""Build the Lambda deployment package: ``deploy/build/s3_parquet_assets_lambda.zip``.

It holds only the project's core, the handler (``lambda_handler.py`` and the ``lambda_`` package),
``dagster_pipes`` and PyYAML's pure-Python ``yaml`` package (the managed layer has no PyYAML; its
compiled ``_yaml`` extension is left out, PyYAML then uses its Python parser), both taken from the
interpreter running this script; pandas, pyarrow, awswrangler and boto3 come from the managed AWS
SDK for pandas layer. With ``--tables FILE`` (``make lambda-zip TABLES=FILE``) the tables file is
validated (the build fails naming the table and the field) and bundled at the zip's root as
``s3pa_tables.yaml``, where the function finds it (``S3PA_TABLES``, when set, takes precedence).
The build is reproducible (sorted entries, fixed timestamps and
permissions, fixed compression level: the same sources give the same bytes) and fails if the zip
exceeds the size limit or if any file in it imports ``dagster`` (or any ``dagster*`` package other
than ``dagster_pipes``), found by an AST scan.

    python deploy/build_zip.py [--out PATH] [--max-bytes N] [--tables FILE]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import io
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "deploy" / "build" / "s3_parquet_assets_lambda.zip"
MAX_BYTES = 5 * 1024 * 1024
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
ALLOWED_DAGSTER = "dagster_pipes"
BUNDLED_TABLES = "s3pa_tables.yaml"
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}
# Compiled extensions are never bundled: the zip must run on any architecture the layer exists for.
_BINARY_SUFFIXES = {".so", ".pyd", ".dylib"}

__all__ = ["BuildError", "Entry", "build", "collect", "forbidden_imports", "main", "write_zip"]


class BuildError(Exception):
    """The package violates a rule (size, forbidden import, missing source)."""


@dataclass(frozen=True)
class Entry:
    arcname: str
    data: bytes


SOURCES = (
    "s3_parquet_assets/__init__.py",
    "s3_parquet_assets/core",
    "s3_parquet_assets/lambda_",
    "s3_parquet_assets/lambda_handler.py",
)


def _files(base: Path, rel: str, *, missing_ok: bool = False) -> Iterator[Path]:
    top = base / rel
    if top.is_file():
        yield top
        return
    if not top.is_dir():
        if missing_ok:
            return
        raise BuildError(f"missing source {top}")
    for path in sorted(top.rglob("*")):
        if path.is_dir() or _SKIP_DIRS & set(path.relative_to(base).parts) or path.suffix in _SKIP_SUFFIXES:
            continue
        yield path


def _package_dir(name: str, dist: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(f"{name} is not installed in this interpreter (pip install {dist})")
    return Path(next(iter(spec.submodule_search_locations)))


def _dagster_pipes_dir() -> Path:
    return _package_dir(ALLOWED_DAGSTER, "dagster-pipes")


def _yaml_dir() -> Path:
    return _package_dir("yaml", "PyYAML")


def tables_entry(tables: Path) -> Entry:
    """The tables file, validated by the core (as the function will read it), as the zip's
    ``s3pa_tables.yaml``; a :class:`BuildError` names the table and the field."""
    from s3_parquet_assets.core import LoadError, read_tables

    try:
        parsed = read_tables(tables)
    except LoadError as exc:
        raise BuildError(str(exc)) from None
    print(f"{tables}: {len(parsed)} table(s): {', '.join(parsed.names)}", file=sys.stderr)
    return Entry(BUNDLED_TABLES, tables.read_bytes())


def collect(
    root: Path = ROOT,
    pipes_dir: Path | None = None,
    *,
    yaml_dir: Path | None = None,
    tables: Path | None = None,
    missing_ok: bool = False,
) -> list[Entry]:
    """Every file of the package, as sorted (arcname, bytes) entries (``missing_ok``: skip a
    missing project source instead of failing)."""
    entries: dict[str, bytes] = {}
    for rel in SOURCES:
        for path in _files(root, rel, missing_ok=missing_ok):
            entries[path.relative_to(root).as_posix()] = path.read_bytes()
    for package in (pipes_dir or _dagster_pipes_dir(), yaml_dir or _yaml_dir()):
        for path in _files(package.parent, package.name):
            if path.suffix not in _BINARY_SUFFIXES:
                entries[path.relative_to(package.parent).as_posix()] = path.read_bytes()
    if tables is not None:
        entry = tables_entry(tables)
        entries[entry.arcname] = entry.data
    return [Entry(name, entries[name]) for name in sorted(entries)]


def _is_forbidden(module: str) -> bool:
    top = module.split(".", 1)[0]
    return top.startswith("dagster") and top != ALLOWED_DAGSTER


def forbidden_imports(source: bytes, filename: str) -> list[str]:
    """``import dagster...`` / ``from dagster... import`` / ``importlib.import_module("dagster...")`` /
    ``__import__("dagster...")`` in one file, as ``file:line: module`` strings."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise BuildError(f"{filename}: cannot parse: {exc}") from exc
    found: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        found += [f"{filename}:{getattr(node, 'lineno', 0)}: {name}" for name in names if _is_forbidden(name)]
    return found


def check(entries: Iterable[Entry]) -> None:
    problems: list[str] = []
    for entry in entries:
        if entry.arcname.endswith(".py"):
            problems += forbidden_imports(entry.data, entry.arcname)
    if problems:
        raise BuildError(
            "the package must not import dagster (only dagster_pipes):\n  " + "\n  ".join(problems)
        )


def write_zip(entries: Iterable[Entry]) -> bytes:
    """The zip's bytes: entries in the given order, fixed timestamps and modes, deflate level 9."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for entry in entries:
            info = zipfile.ZipInfo(entry.arcname, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so the mode below is honoured
            info.external_attr = (0o100644 & 0xFFFF) << 16
            zf.writestr(info, entry.data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return buf.getvalue()


def build(
    out: Path = DEFAULT_OUT, *, max_bytes: int = MAX_BYTES, root: Path = ROOT, tables: Path | None = None
) -> Path:
    """Collect, check and write the package (with the tables file ``tables`` bundled, validated);
    raises :class:`BuildError` on a violated rule, writing nothing."""
    entries = collect(root, tables=tables, missing_ok=True)
    check(entries)  # a dagster import is named even when another source is missing
    missing = [rel for rel in SOURCES if not (root / rel).exists()]
    if missing:
        raise BuildError(f"missing source {root / missing[0]}")
    data = write_zip(entries)
    if len(data) > max_bytes:
        raise BuildError(f"the package is {len(data)} bytes, over the limit of {max_bytes} bytes")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output zip (default {DEFAULT_OUT})")
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES, help="size limit (default 5 MiB)")
    parser.add_argument(
        "--tables", type=Path, default=None, help=f"tables file to validate and bundle as {BUNDLED_TABLES}"
    )
    args = parser.parse_args(argv)
    try:
        out = build(args.out, max_bytes=args.max_bytes, tables=args.tables)
    except BuildError as exc:
        print(f"build_zip: {exc}", file=sys.stderr)
        return 1
    data = out.read_bytes()
    with zipfile.ZipFile(out) as zf:
        count = len(zf.namelist())
    print(f"{out}: {count} files, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
