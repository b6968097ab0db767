"""Where the monitoring's files are: the project's rules and dashboards folder, and where Prometheus reads its
secrets. A leaf, so that an engine's monitoring module (engines/llamacpp_monitoring.py) and planning/monitoring.py,
which reads the engines' registry, both take them without importing each other."""

from __future__ import annotations

from pathlib import Path

SECRETS_DIR = "/etc/prometheus/secrets"
GRAFANA_DASHBOARDS_DIR = "/etc/grafana/dashboards"
MONITORING_DIR = Path(__file__).resolve().parents[2] / "monitoring"
