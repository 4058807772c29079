"""Synthesised stacks shared by the infrastructure tests: each configuration is synthesised once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# infra/ is not an installed package: import it from the project root, however pytest is started.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# jsii warns on every start about the Node version; the warning says nothing about this project.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

import pytest  # noqa: E402

from .synthesis import EXAMPLE_POLICIES, EXISTING_DATABASE, INLINE_POLICIES, Synth, synthesize  # noqa: E402


@pytest.fixture(scope="session")
def new_db(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The default deployment: cdk.json as committed (new Aurora database, IAM-authorised API)."""
    return synthesize({}, tmp_path_factory.mktemp("new-db"))


@pytest.fixture(scope="session")
def existing_db(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(EXISTING_DATABASE, tmp_path_factory.mktemp("existing-db"))


@pytest.fixture(scope="session")
def two_tables(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The example policy file: the customer table and the call log (trial phase, purge)."""
    return synthesize({"policy_file": EXAMPLE_POLICIES}, tmp_path_factory.mktemp("two-tables"))


@pytest.fixture(scope="session")
def inline_policies(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Three policies inline in the context: another zone, dry_run mode, one policy off."""
    return synthesize({"policies": INLINE_POLICIES}, tmp_path_factory.mktemp("inline-policies"))


@pytest.fixture(params=["new_db", "existing_db", "two_tables"])
def any_synth(request: pytest.FixtureRequest) -> Synth:
    """Both deployment shapes, for properties that must hold in each."""
    return request.getfixturevalue(request.param)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "network: needs PyPI (deselect with -m 'not network' when offline)")
