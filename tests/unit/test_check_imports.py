"""The import check `make lint` runs: core → edge imports and cycles fail; the real tree passes."""

from __future__ import annotations

from pathlib import Path

from tools.check_imports import cycle_violations, import_graph, layer_violations, main

ROOT = Path(__file__).resolve().parents[2]


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in ("archiver", "handlers", "local"):
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


def test_an_import_from_the_core_into_an_edge_is_reported_even_inside_a_function(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "archiver/runner.py": "def drive():\n    from handlers import archive\n",
        "handlers/archive.py": "from archiver import runner\n",
    })
    assert layer_violations(import_graph(root)) == [
        "archiver.runner -> handlers.archive: archiver must not import handlers"]


def test_the_lambda_handlers_may_not_import_the_local_edge_but_the_local_edge_may_import_both(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "handlers/status.py": "from local.cli import main\n",
        "local/cli.py": "from archiver import jobs\nfrom handlers import status\n",
        "archiver/jobs.py": "",
    })
    assert layer_violations(import_graph(root)) == ["handlers.status -> local.cli: handlers must not import local"]


def test_a_cycle_through_relative_imports_is_reported_with_its_edges(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "archiver/alerts.py": "from .slack import SlackSink\n",
        "archiver/slack.py": "from .alerts import Alert\n",
        "archiver/jobs.py": "from . import alerts\n",
    })
    assert cycle_violations(import_graph(root)) == [
        "import cycle among archiver.alerts, archiver.slack: archiver.alerts -> archiver.slack; "
        "archiver.slack -> archiver.alerts"]


def test_the_project_has_no_wrong_way_import_and_no_cycle() -> None:
    assert main(["check_imports", str(ROOT / "functions")]) == 0
