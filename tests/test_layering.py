"""`pipeline` is pure library code: it never imports ray, grpc, redis, the serving layer or
the `clipspot` API package (which wraps both).

Checked statically on every import statement (also lazy ones inside functions), and dynamically
by importing the whole package in a fresh interpreter and looking at sys.modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("ray", "grpc", "grpc_health", "grpc_reflection", "redis", "services", "proto",
             "clipspot")


def _imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_pipeline_source_never_imports_serving_packages() -> None:
    offenders = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for module in _imported_modules(path):
            if module.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, offenders


def test_importing_all_of_pipeline_loads_no_serving_package() -> None:
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "pipeline").rglob("*.py")
        if p.name != "__main__.py"
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {sorted(modules)!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"pipeline pulled in: {out.stdout.strip()}"


def test_no_import_package_named_proto() -> None:
    # proto-plus owns the name `proto`; our proto/ folder holds only .proto sources.
    assert not (ROOT / "proto" / "__init__.py").exists()
    assert not list((ROOT / "proto").rglob("*.py"))
