"""The one renderer of a planned container's settings, in docker-compose's words.

The text plan, the pull-request comment and the compose export all show a container through
`container_settings`, so they cannot disagree about what Pulumi would create. Secrets show as the
plan's mask; the compose export turns them into `${NAME:?...}`.
"""

from __future__ import annotations

from typing import Any

from components.tools.planned import SECRET_MASK, Plan, PlannedResource, fake_image_id


def image_names(plan: Plan) -> dict[str, str]:
    """The image id the plan gives each RemoteImage -> the image reference it stands for."""
    return {fake_image_id(r.inputs["name"]): r.inputs["name"] for r in plan.of_type(":RemoteImage")}


def service_name(container: PlannedResource) -> str:
    """A container's compose service: its resource name less `-container` (vllm, vllm-prefetch, gateway)."""
    return container.name.removesuffix("-container")


def config_name(container: PlannedResource, path: str) -> str:
    """The compose config that carries one uploaded file: `gateway-config` for /app/config.yaml."""
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"{service_name(container)}-{stem}"


def is_one_shot_run(r: PlannedResource) -> bool:
    """A one-shot `docker run` through pulumi-command (components/container.py `run_once`): a model download,
    Grafana's password reset."""
    triggers = r.inputs.get("triggers") or []
    return (
        r.type.startswith("command:")
        and bool(triggers)
        and isinstance(triggers[0], dict)
        and "secretEnvs" in triggers[0]
    )


def one_shot_runs(plan: Plan) -> list[PlannedResource]:
    """Each one-shot run as the container it runs, in a container's own input names, under the Docker provider
    of the containers it waits for or that wait for it: what the text plan and the compose export show of it."""
    containers = {c.name: c for c in plan.of_type(":Container")}
    waiting = {dep: c for c in containers.values() for dep in c.options.get("depends_on", [])}
    out = []
    for r in plan.resources:
        if not is_one_shot_run(r):
            continue
        run = r.inputs["triggers"][0]
        near = waiting.get(r.name) or next(
            (containers[d] for d in r.options.get("depends_on", []) if d in containers), None
        )
        inputs = {
            "name": run["name"],
            "image": run["image"],
            **({"entrypoints": run["entrypoints"]} if run.get("entrypoints") else {}),
            "command": run["command"],
            "envs": [*run["envs"], *(f"{k}={SECRET_MASK}" for k in run["secretEnvs"])],
            "volumes": run["volumes"],
            "mustRun": False,
            "restart": "no",
        }
        options = {"provider": near.options.get("provider")} if near else {}
        out.append(PlannedResource(r.type, r.name, r.parent, inputs, {**r.options, **options}, r.urn))
    return out


def container_settings(container: PlannedResource, images: dict[str, str]) -> dict[str, Any]:
    """A container's inputs as a compose service (compose's key names and units)."""
    i = container.inputs
    svc: dict[str, Any] = {
        "container_name": i["name"],
        "image": images.get(i["image"], i["image"]),
    }
    if i.get("entrypoints"):
        svc["entrypoint"] = list(i["entrypoints"])
    # None runs the image's own CMD; compose takes an explicit `command: []` as an empty one instead (the
    # compose specification, "command"), so an image's CMD (Open WebUI's `bash start.sh`) is left unset.
    if i.get("command"):
        svc["command"] = list(i["command"])
    if i.get("devices"):
        svc["devices"] = [
            f"{d['hostPath']}:{d.get('containerPath', d['hostPath'])}:{d.get('permissions', 'rwm')}"
            for d in i["devices"]
        ]
    if i.get("groupAdds"):
        svc["group_add"] = list(i["groupAdds"])
    if i.get("shmSize"):
        svc["shm_size"] = f"{i['shmSize']}m"  # pulumi-docker's shm_size is in MB
    if i.get("ipcMode"):
        svc["ipc"] = i["ipcMode"]
    svc["privileged"] = bool(i.get("privileged"))
    if i.get("init"):
        svc["init"] = True
    if i.get("envs"):
        svc["environment"] = dict(entry.partition("=")[::2] for entry in i["envs"])
    if i.get("ports"):
        svc["ports"] = [
            f"{p['ip']}:{p['external']}:{p['internal']}" if p.get("ip") else f"{p['external']}:{p['internal']}"
            for p in i["ports"]
        ]
    volumes = [
        f"{v.get('volumeName') or v['hostPath']}:{v['containerPath']}" + (":ro" if v.get("readOnly") else "")
        for v in i.get("volumes") or []
    ]
    for m in i.get("mounts") or []:  # bind mounts: compose's short form, `ro` and the propagation as options
        options = [
            *(["ro"] if m.get("readOnly") else []),
            *filter(None, [(m.get("bindOptions") or {}).get("propagation")]),
        ]
        volumes.append(f"{m['source']}:{m['target']}" + (":" + ",".join(options) if options else ""))
    if volumes:
        svc["volumes"] = volumes
    if i.get("networkMode"):
        svc["network_mode"] = i["networkMode"]
    if i.get("pidMode"):
        svc["pid"] = i["pidMode"]
    if i.get("hosts"):
        svc["extra_hosts"] = [f"{h['host']}:{h['ip']}" for h in i["hosts"]]
    if i.get("networksAdvanced"):
        svc["networks"] = [n["name"] for n in i["networksAdvanced"]]
    if i.get("uploads"):
        svc["configs"] = [{"source": config_name(container, u["file"]), "target": u["file"]} for u in i["uploads"]]
    hc = i.get("healthcheck")
    if hc:
        svc["healthcheck"] = {
            k: v
            for k, v in {
                "test": hc.get("tests"),
                "interval": hc.get("interval"),
                "timeout": hc.get("timeout"),
                "retries": hc.get("retries"),
                "start_period": hc.get("startPeriod"),
                "start_interval": hc.get("startInterval"),
            }.items()
            if v is not None
        }
    if i.get("restart"):
        retries = i.get("maxRetryCount")  # Docker takes a retry count only with on-failure
        svc["restart"] = f"{i['restart']}:{retries}" if i["restart"] == "on-failure" and retries else i["restart"]
    if i.get("logDriver"):
        svc["logging"] = {"driver": i["logDriver"], "options": dict(i.get("logOpts") or {})}
    if i.get("labels"):
        svc["labels"] = {lbl["label"]: lbl["value"] for lbl in i["labels"]}
    if i.get("destroyGraceSeconds"):
        svc["stop_grace_period"] = f"{i['destroyGraceSeconds']}s"
    return svc


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_text(v) if not isinstance(v, str) else v for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def settings_lines(svc: dict[str, Any], wait: str) -> list[str]:
    """The text plan's lines for one container: every setting, one line each."""
    lines = []
    for key, value in svc.items():
        if key == "command":
            lines.append("command: " + " ".join(value))
        elif key == "healthcheck":
            test = [f"<a script of {t.count(chr(10))} lines>" if "\n" in t else t for t in value.get("test", [])]
            lines.append(
                f"healthcheck: {' '.join(test)} (every {value.get('interval')}, "
                f"timeout {value.get('timeout')}, start period {value.get('start_period')})"
            )
        elif key == "configs":
            lines.append("configs: " + ", ".join(f"{c['source']} -> {c['target']}" for c in value))
        else:
            lines.append(f"{key}: {_text(value)}")
    lines.append(wait)
    return lines
