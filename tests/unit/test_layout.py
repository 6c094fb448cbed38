"""The layers stay layers, read from every module's syntax tree: shared/ (what all services use) imports
no service, production code (shared/, services/, admin/) imports nothing of the dev stack (its
public dev keys included), and a service reaches into no other service's modules."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = ("shared", "services", "admin")


def modules(package: str) -> list[Path]:
    found = sorted((REPO / package).rglob("*.py"))
    assert found, f"no modules under {package}/"
    return found


def imported(path: Path) -> set[str]:
    """Every module `path` imports by name: import statements anywhere in the file (functions
    included) and constant names given to importlib.import_module / __import__."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # A relative import: resolve it against the module's own package.
                base = path.relative_to(REPO).with_suffix("").parts[: -node.level]
                names.add(".".join([*base, *([node.module] if node.module else [])]))
            elif node.module:
                names.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def offenders(package: str, forbidden: str, allowed: str | None = None) -> list[str]:
    found = []
    for path in modules(package):
        for name in sorted(imported(path)):
            if within(name, forbidden) and not (allowed and within(name, allowed)):
                found.append(f"{path.relative_to(REPO)} imports {name}")
    return found


def test_shared_imports_no_service() -> None:
    assert offenders("shared", "services") == []


def test_shared_imports_not_the_admin_cli() -> None:
    assert offenders("shared", "admin") == []


@pytest.mark.parametrize("package", PRODUCTION)
def test_production_code_imports_nothing_of_the_dev_stack(package: str) -> None:
    assert offenders(package, "devstack") == []


@pytest.mark.parametrize("service", ["batcher", "confirmer", "intake", "renderer"])
def test_a_service_reaches_into_no_other_service(service: str) -> None:
    assert offenders(f"services/{service}", "services", allowed=f"services.{service}") == []


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The walk finds every way the rules could be broken, so an empty list above means something."""
    module = tmp_path / "sample.py"
    module.write_text(
        "import services.batcher\n"
        "from devstack.anvil import DEV_KEYS\n"
        "def later():\n"
        "    from services.renderer import jobs\n"
        "    importlib.import_module('devstack.run')\n"
        "    __import__('services.intake')\n"
    )
    assert imported(module) == {
        "services.batcher",
        "devstack.anvil",
        "services.renderer",
        "devstack.run",
        "services.intake",
    }
