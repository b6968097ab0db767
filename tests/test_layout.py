"""The layout's promise: the pure planning code and the host tools import no Pulumi."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

PURE = [
    "components.settings",
    "components.planning.catalog",
    "components.planning.memory",
    "components.planning.rules",
    "components.planning.devices",
    "components.planning.preflight",
    "components.planning.startup_logs",
    "components.planning.monitoring",
    "components.planning.gateway",
    "components.planning.health",
    "components.planning.prefill",
    "components.planning.secrets",
    "components.planning.open_webui",
    "components.planning.deployment",
    "components.planning.service",
    "components.planning.monitoring_services",
    "components.planning.engines",
    "components.planning.timing",
    "components.planning.provider_facts",
    "components.planning.extract_provider_facts",
    "components.planning.steps",
    "components.planning.urns",
    "components.tools.discover",
    "components.tools.compose",
    "components.tools.verify",
    "components.tools.load",
    "components.discover",
    "components.verify",
]


@pytest.mark.parametrize("module", PURE)
def test_module_leaves_pulumi_out_of_sys_modules(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0].startswith('pulumi')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", f"{module} imports {done.stdout.strip()}"


def test_the_check_sees_a_pulumi_import() -> None:
    """The test above would fail for a module that does import pulumi (the plan does)."""
    code = "import sys, components.tools.plan; print('pulumi' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"
