"""Metrics, dashboards and alerts: node-exporter on every host, Prometheus, Grafana and Alertmanager on one.

Every container, file and run comes from the deployment plan (components/planning/monitoring_services.py,
its files from components/planning/monitoring.py); here they become resources on their hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pulumi

from components.container import OneShot, ServiceResources, Wiring, run_once, service_resources
from components.host import RocmHost
from components.planning.deployment import MonitoringPlan, Secret

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class MonitoringArgs:
    plan: MonitoringPlan
    hosts: Mapping[str, RocmHost]
    secrets: Callable[[Secret], pulumi.Output[str]]
    networks: Mapping[str, Sequence[pulumi.Input[str]]] = field(default_factory=dict)  # by host
    depends_on: Mapping[str, Sequence[pulumi.Resource]] = field(default_factory=dict)  # by host: its preflight


class Monitoring(pulumi.ComponentResource):
    prometheus_url: pulumi.Output[str]
    grafana_url: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("rocm-inference:monitoring:Monitoring", name, None, opts)
        p = args.plan
        here = args.hosts[p.host]
        for service, container in p.node_exporters.items():
            host = args.hosts[container.host]
            wiring = Wiring(args.secrets, depends_on=list(args.depends_on.get(container.host, [])))
            service_resources(service, container, wiring, self, host.provider)
        wiring = Wiring(
            args.secrets,
            networks=list(args.networks.get(p.host, [])),
            depends_on=list(args.depends_on.get(p.host, [])),
        )
        made = {
            service: service_resources(service, container, wiring, self, here.provider)
            for service, container in p.services.items()
        }
        self._grafana_password_reset(made[p.grafana_password_reset.of], args, here)
        # On the monitoring host's loopback: from elsewhere through Grafana, or `ssh -L 9090:127.0.0.1:9090`.
        self.prometheus_url = made["prometheus"].url(LOOPBACK)
        self.grafana_url = made["grafana"].url(p.address)
        self.register_outputs(
            {
                "prometheus_url": self.prometheus_url,
                "grafana_url": self.grafana_url,
            }
        )

    def _grafana_password_reset(self, grafana: ServiceResources, args: MonitoringArgs, here: RocmHost) -> None:
        """The run that sets Grafana's admin password on its volume once it is up (the plan says why)."""
        run = args.plan.grafana_password_reset
        assert grafana.volume is not None, "Grafana keeps its data in a volume"
        run_once(
            "grafana-password-reset",
            here.shell,
            OneShot(
                name=run.name,
                image=grafana.image.image_id,
                entrypoint=list(run.entrypoint),
                command=list(run.command),
                volume=grafana.volume.name,
                path=run.path,
                secret_environment=Wiring(args.secrets).environment(run.secret_environment),
                run=run.run,
            ),
            here.on_host(
                pulumi.ResourceOptions(
                    parent=self,
                    # Against the database Grafana has created and migrated (the CLI also runs beside a live
                    # Grafana: `docker exec grafana grafana cli ...` is the documented way).
                    depends_on=[grafana.container, *args.depends_on.get(run.host, [])],
                    replacement_trigger=run.host or None,
                )
            ),
        )
