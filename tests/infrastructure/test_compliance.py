"""cdk-nag's AWS Solutions pack and cfn-lint on the synthesised templates."""

from __future__ import annotations

from collections.abc import Iterator

from aws_cdk import Validations
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import lint
from cfnlint.config import ManualArgs
from constructs import IConstruct

from .synthesis import Synth

# Regions the template is linted for: the first user's nearest and the usual default.
LINT_REGIONS = ["eu-west-1", "us-east-1"]


def acknowledgments(scope: IConstruct) -> Iterator[tuple[str, str, str]]:
    """(construct path, rule id, reason) of every cdk-nag acknowledgment in the tree."""
    for construct in scope.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                for rule, reason in entry.data.items():
                    yield construct.node.path, rule, reason


def test_aws_solutions_checks_find_nothing_unacknowledged(any_synth: Synth) -> None:
    report = AwsSolutionsChecks().validate_scope(any_synth.app)
    found = [f"{v.rule_name} at {[r.construct_path for r in v.violating_resources]}" for v in report.violations]
    assert found == []


def test_every_acknowledgment_gives_a_reason(any_synth: Synth) -> None:
    found = list(acknowledgments(any_synth.app))
    assert found
    for path, rule, reason in found:
        assert len(reason.split()) >= 8, f"{rule} on {path} needs a real reason, got {reason!r}"


def test_cfn_lint_finds_no_errors(any_synth: Synth) -> None:
    matches = lint(any_synth.template_path.read_text(), config=ManualArgs(regions=LINT_REGIONS))
    errors = [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches if m.rule.id.startswith("E")]
    assert errors == []
