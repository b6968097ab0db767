"""The rules as CrossGuard policies: mandatory, for previews and `pulumi up --policy-pack policy`."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy
from pulumi_policy.proxy import UnknownValueError

from rules import RULES, Options, Rule


def _validate(rule: Rule):  # type: ignore[no-untyped-def]
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        opts = Options(
            delete_before_replace=bool(args.opts.delete_before_replace),
            additional_secret_outputs=tuple(args.opts.additional_secret_outputs or ()),
        )
        try:
            found = rule(args.resource_type, args.props, opts)
        except UnknownValueError:
            # A value the preview cannot know yet (a generated password in the chat page's or Grafana's
            # environment, an image id before the pull): the rule is skipped now and runs at `pulumi up`,
            # where every input is known before the resource is registered. pulumi_policy would instead
            # report "can't run policy ... during preview" (pulumi_policy/policy.py L1012-1022).
            return
        for message in found:
            report_violation(message, None)

    return validate


POLICIES = [
    ResourceValidationPolicy(
        name=name, description=description, validate=_validate(rule), enforcement_level=EnforcementLevel.MANDATORY
    )
    for name, (description, rule) in RULES.items()
]
