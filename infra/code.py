"""The one code asset every function shares, built without Docker.

The asset holds the runtime requirements installed for Lambda's platform (arm64 wheels for
CPython ``PYTHON_VERSION``) plus the ``archiver`` core and the ``handlers`` packages, all compiled
to bytecode by a CPython of that version, and the RDS CA bundle.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from .constants import EXPORT_PIP_PLATFORMS, EXPORT_TRIM, PIP_PLATFORM, PYARROW, PYTHON_VERSION, RUNTIME

PACKAGES = ("archiver", "handlers")
# RDS/Aurora server certificates chain to Amazon's RDS CAs, which no public trust store holds:
# the asset ships the bundle so the functions verify the database (ARCHIVER_DB_SSL=verify-full).
RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
RDS_CA_BUNDLE_LOCAL = Path("certs") / "rds-global-bundle.pem"  # downloaded by the deployer, not committed
RDS_CA_IN_ASSET = Path("archiver") / "certs" / "rds-global-bundle.pem"
FETCH_CA_COMMAND = f"mkdir -p certs && curl -fsSo {RDS_CA_BUNDLE_LOCAL} {RDS_CA_BUNDLE_URL}"
_IGNORED = ("__pycache__", "*.pyc", ".mypy_cache")
# Lambda's /var/task is read-only: without shipped bytecode every cold start compiles every module
# it imports, again. Unchecked hashes: the asset never changes under its bytecode, so no stat() per module.
COMPILE_ARGS = ("-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash")


def ca_bundle_problem(root: Path, ca_bundle: Path) -> str | None:
    """Why the CA bundle cannot ship (the message names the command that fetches it), or None."""
    path = root / ca_bundle
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return (f"db_ca_bundle: {ca_bundle} is missing; the functions verify the database's TLS certificate "
                f"with it (ARCHIVER_DB_SSL=verify-full). Fetch it first:\n  {FETCH_CA_COMMAND}")
    if "-----BEGIN CERTIFICATE-----" not in text:
        return (f"db_ca_bundle: {ca_bundle} holds no PEM certificate; fetch it again:\n  {FETCH_CA_COMMAND}")
    return None


def runtime_python() -> str | None:
    """A CPython of the Lambda runtime's version, to compile the asset's bytecode for it; None when this
    machine has none (the asset then ships without bytecode: each cold start compiles what it imports)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON_VERSION:
        return sys.executable
    candidates = [os.environ.get("ARCHIVER_RUNTIME_PYTHON", ""), shutil.which(f"python{PYTHON_VERSION}") or "",
                  *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{PYTHON_VERSION}.*/bin/python3")),
                          reverse=True)]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == PYTHON_VERSION:
            return candidate
    return None


def _source_files(root: Path, ca_bundle: Path) -> list[Path]:
    files = [root / "requirements.txt", root / ca_bundle]
    for package in PACKAGES:
        files += [p for p in (root / "functions" / package).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return sorted(files)


def code_hash(root: Path, ca_bundle: Path = RDS_CA_BUNDLE_LOCAL) -> str:
    """Hash of everything that goes into the asset, so an unchanged tree is never rebuilt or redeployed."""
    digest = hashlib.sha256(f"{PYTHON_VERSION}/{PIP_PLATFORM}/{' '.join(COMPILE_ARGS)}".encode())
    for path in _source_files(root, ca_bundle):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class LocalBundler:
    """Builds the asset with pip on this machine (cross-platform wheels), so no Docker is needed."""

    def __init__(self, root: Path, ca_bundle: Path, extra: tuple[str, ...] = (),
                 platforms: tuple[str, ...] = (PIP_PLATFORM,), trim: tuple[str, ...] = ()) -> None:
        self._root = root
        self._ca_bundle = ca_bundle
        self._extra = extra  # pinned requirements beyond requirements.txt (the export function's pyarrow)
        self._platforms = [arg for p in platforms for arg in ("--platform", p)]
        self._trim = trim  # globs of installed files the functions never load

    def try_bundle(self, output_dir: str, *_options: Any, **_kwargs: Any) -> bool:
        out = Path(output_dir)
        for package in PACKAGES:
            if not (self._root / "functions" / package / "__init__.py").exists():
                raise RuntimeError(f"functions/{package} is missing: the Lambda asset cannot be built")
        # boto3 stays in: the runtime's copy is older and unpinned, and aws-xray-sdk pulls botocore anyway.
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--requirement", str(self._root / "requirements.txt"),
             *self._extra, "--target", str(out), *self._platforms, "--only-binary=:all:",
             "--python-version", PYTHON_VERSION, "--implementation", "cp",
             "--no-compile", "--quiet", "--disable-pip-version-check"],
            check=True,
        )
        for pattern in self._trim:
            for path in out.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        for package in PACKAGES:
            shutil.copytree(self._root / "functions" / package, out / package,
                            ignore=shutil.ignore_patterns(*_IGNORED), dirs_exist_ok=True)
        # build_app refused a missing bundle already; this guards a bundler used on its own.
        problem = ca_bundle_problem(self._root, self._ca_bundle)
        if problem:
            raise RuntimeError(problem)
        target = out / RDS_CA_IN_ASSET
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._root / self._ca_bundle, target)
        python = runtime_python()
        if python is not None:
            subprocess.run([python, *COMPILE_ARGS, str(out)], check=True)
        return True



def export_code(root: Path, source_hash: str, ca_bundle: Path = RDS_CA_BUNDLE_LOCAL) -> lambda_.Code:
    """The export function's own asset: the shared code plus pyarrow, for x86_64 (pyarrow is large;
    the archive function's asset and cold start stay as they are)."""
    digest = hashlib.sha256(f"{source_hash}/{PYARROW}/{EXPORT_PIP_PLATFORMS}/{EXPORT_TRIM}".encode()).hexdigest()
    return lambda_.Code.from_asset(
        str(root / "functions"), asset_hash_type=AssetHashType.CUSTOM, asset_hash=digest,
        bundling=BundlingOptions(image=RUNTIME.bundling_image,
                                 local=LocalBundler(root, ca_bundle, (PYARROW,), EXPORT_PIP_PLATFORMS, EXPORT_TRIM)))


def lambda_code(root: Path, asset_hash: str, ca_bundle: Path = RDS_CA_BUNDLE_LOCAL) -> lambda_.Code:
    """The shared asset (``asset_hash`` from ``code_hash``); bind it to every function so it is staged once."""
    return lambda_.Code.from_asset(
        str(root / "functions"),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=asset_hash,
        bundling=BundlingOptions(
            # Never used: local bundling always succeeds or raises. CDK requires an image regardless.
            image=RUNTIME.bundling_image,
            local=LocalBundler(root, ca_bundle),
        ),
    )
