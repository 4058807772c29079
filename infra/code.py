"""The one code asset every function shares, built without Docker.

The asset holds the runtime requirements installed for Lambda's platform (arm64 wheels for
CPython ``PYTHON_VERSION``) plus the ``archiver`` core and the ``handlers`` packages.
"""

from __future__ import annotations

import hashlib
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
_IGNORED = ("__pycache__", "*.pyc", ".mypy_cache")


def _source_files(root: Path) -> list[Path]:
    files = [root / "requirements.txt", root / RDS_CA_BUNDLE_LOCAL]
    for package in PACKAGES:
        files += [p for p in (root / "functions" / package).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return sorted(files)


def code_hash(root: Path) -> str:
    """Hash of everything that goes into the asset, so an unchanged tree is never rebuilt or redeployed."""
    digest = hashlib.sha256(f"{PYTHON_VERSION}/{PIP_PLATFORM}".encode())
    for path in _source_files(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class LocalBundler:
    """Builds the asset with pip on this machine (cross-platform wheels), so no Docker is needed."""

    def __init__(self, root: Path, extra: tuple[str, ...] = (), platforms: tuple[str, ...] = (PIP_PLATFORM,),
                 trim: tuple[str, ...] = ()) -> None:
        self._root = root
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
        self._add_rds_ca_bundle(out / RDS_CA_IN_ASSET)
        return True

    def _add_rds_ca_bundle(self, target: Path) -> None:
        """Ship certs/rds-global-bundle.pem (see docs/deploy.md); without it, say so loudly."""
        local = self._root / RDS_CA_BUNDLE_LOCAL
        if not local.exists():
            print(f"warning: {RDS_CA_BUNDLE_LOCAL} is missing: download {RDS_CA_BUNDLE_URL} there before "
                  "deploying, or the functions cannot verify the database's TLS certificate", file=sys.stderr)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)


def export_code(root: Path, source_hash: str) -> lambda_.Code:
    """The export function's own asset: the shared code plus pyarrow, for x86_64 (pyarrow is large;
    the archive function's asset and cold start stay as they are)."""
    digest = hashlib.sha256(f"{source_hash}/{PYARROW}/{EXPORT_PIP_PLATFORMS}/{EXPORT_TRIM}".encode()).hexdigest()
    return lambda_.Code.from_asset(
        str(root / "functions"), asset_hash_type=AssetHashType.CUSTOM, asset_hash=digest,
        bundling=BundlingOptions(image=RUNTIME.bundling_image,
                                 local=LocalBundler(root, (PYARROW,), EXPORT_PIP_PLATFORMS, EXPORT_TRIM)))


def lambda_code(root: Path, asset_hash: str) -> lambda_.Code:
    """The shared asset (``asset_hash`` from ``code_hash``); bind it to every function so it is staged once."""
    return lambda_.Code.from_asset(
        str(root / "functions"),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=asset_hash,
        bundling=BundlingOptions(
            # Never used: local bundling always succeeds or raises. CDK requires an image regardless.
            image=RUNTIME.bundling_image,
            local=LocalBundler(root),
        ),
    )
