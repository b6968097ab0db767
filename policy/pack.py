"""The rules as CrossGuard policies: mandatory, for previews and `pulumi up --policy-pack policy`."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from rules import RULES, Options, Rule


def _validate(rule: Rule):  # type: ignore[no-untyped-def]
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        opts = Options(
            delete_before_replace=bool(args.opts.delete_before_replace),
            additional_secret_outputs=tuple(args.opts.additional_secret_outputs or ()),
        )
        for message in rule(args.resource_type, args.props, opts):
            report_violation(message, None)

    return validate


POLICIES = [
    ResourceValidationPolicy(
        name=name, description=description, validate=_validate(rule), enforcement_level=EnforcementLevel.MANDATORY
    )
    for name, (description, rule) in RULES.items()
]
