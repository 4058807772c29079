"""pyarrow is the export function's alone: the archive function and the CLI import and start without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCK = "import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None; "


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT / "functions"), "PATH": "/usr/bin:/bin"})


def test_the_archive_function_and_the_cli_import_without_pyarrow():
    proc = run("import handlers.archive, handlers.status, local.cli, archiver.export, archiver.erasure;"
               " print('ok')")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_cli_parses_the_export_commands_without_pyarrow():
    proc = run("from local.cli import build_parser;"
               " a = build_parser().parse_args(['export', '--to', '/tmp/x', '--older-than', '730d']);"
               " print(a.command, a.dest)")
    assert proc.returncode == 0 and proc.stdout.split() == ["export", "/tmp/x"], proc.stderr
