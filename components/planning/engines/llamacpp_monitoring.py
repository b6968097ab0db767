"""llama.cpp's llama-server under monitoring: the metric names it exports, its Prometheus scrape job, its alert
rules (monitoring/llamacpp/alerts.rules.yml) and its progress healthcheck. Pure, like planning/monitoring.py.

Read at ggml-org/llama.cpp@0c1e57098bba43ac29e6e3b677cdceebdd22334f (llama-cpp-python 0.3.36's vendor/llama.cpp,
tests/engine/llama-cpp-requirements.txt), tools/server/:
- server-task.cpp:1524-1602: /metrics (with --metrics) is the counters and gauges below, `llamacpp:` names without
  labels; no process collector, and no KV cache usage metric in this version.
- server-context.cpp:4052-4085: n_decode_total moves on every llama_decode() call, one per batch of at most -b
  tokens, prompt batches included; prompt_tokens_total moves only at a batch with output (a long prompt's last).
- server-context.cpp:2482-2496: requests_processing counts the busy slots, requests_deferred the requests waiting
  for one.
- server-http.cpp:306-326: while the model loads, every path (/health and /metrics too) answers 503.
- server-http.cpp:251-300: with --api-key only /health and /v1/health are public; /metrics takes the key as
  `Authorization: Bearer` (or X-Api-Key) and answers 401 without it.
- server-context.cpp:4648-4706: /metrics is a task of the server's main loop, /health (4635-4646) is not: a server
  wedged inside a decode answers /health 200 and never answers /metrics.

How a hang is told from loading and from work (progress_check): /health 503 is loading, whatever it lasts, and
runs no stall clock; with /health 200, the server is stalled while it holds requests (busy or deferred) and
n_decode_total does not move, or while its main loop does not answer /metrics at all. Past the stall window the
check ends the server as the vLLM one does (components/planning/health.py: SIGTERM to PID 1, SIGKILL a minute
later) and Docker's restart policy brings it back; LlamaCppStalled or LlamaCppDown fires at about 5 minutes,
before that. The gfx906 image runs the check's python: mixa3607/ML-gfx906's image installs python3 (its
llama.cpp/build-image.Dockerfile line 16, at 1bdfa3f833773de5ab9c5e8f386148c2ce14879d).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.planning.catalog import dump_yaml
from components.planning.health import KILL_AFTER_S, RESUME_OR_KILL, STALL_MIN_S, STATE_FILE
from components.planning.monitoring_paths import GRAFANA_DASHBOARDS_DIR, MONITORING_DIR, SECRETS_DIR

# The Prometheus job of llama.cpp servers; its targets carry `host` and `server` like the vLLM job's.
JOB_LLAMACPP = "llamacpp"
PREFIX = "llamacpp:"
# server-task.cpp:1524-1564, `# TYPE ... counter` (n_tokens_max is a high watermark typed as a counter).
COUNTERS = (
    "prompt_tokens_total",
    "prompt_tokens_cached_total",
    "prompt_seconds_total",
    "tokens_predicted_total",
    "tokens_predicted_seconds_total",
    "n_decode_total",
    "n_tokens_max",
    "spec_decode_num_draft_tokens_total",
    "spec_decode_num_accepted_tokens_total",
    "spec_decode_num_drafts_total",
)
# server-task.cpp:1566-1590, `# TYPE ... gauge`: the two throughputs average the window since the previous scrape.
GAUGES = (
    "prompt_tokens_seconds",
    "predicted_tokens_seconds",
    "requests_processing",
    "requests_deferred",
    "n_busy_slots_per_decode",
)
METRICS: dict[str, str] = {PREFIX + n: "counter" for n in COUNTERS} | {PREFIX + n: "gauge" for n in GAUGES}

RULES_DIR = MONITORING_DIR / "llamacpp"
# Where Prometheus reads them (beside planning/monitoring.py's RULES_FILE, listed in rule_files too).
RULES_FILE = "/etc/prometheus/llamacpp.rules.yml"
# The servers' key, read by Prometheus from a file beside the gateway's (never in prometheus.yml).
KEY_FILE = f"{SECRETS_DIR}/llamacpp-key"
# The planned servers' own rules (planned_rules), beside RULES_FILE.
PLANNED_RULES_FILE = "/etc/prometheus/llamacpp-planned.rules.yml"
# Ours: a sequence at 90 % of its slot's context is a few answers from being cut; decode below the band's low
# edge for 15 minutes is no burst.
CONTEXT_SHARE = 0.9
SLOW_WINDOW = "15m"
# llama-server reads --api-key from this variable (common/arg.cpp:3501); the healthcheck runs in the container
# with its environment, so it sends the key the same way.
API_KEY_ENV = "LLAMA_API_KEY"


def rules_text() -> str:
    """monitoring/llamacpp/alerts.rules.yml, as it is."""
    return (RULES_DIR / "alerts.rules.yml").read_text()


@dataclass(frozen=True)
class PlannedServer:
    """What the plan says of one llama.cpp server that its alerts compare with: the tokens one slot holds (what
    llama_n_ctx_seq gives the server, server-context.cpp:1194: -c, or -c / -np where the slots split the KV cache) and
    the low edge of its planned decode band for one request (llamacpp_speed.server_speed), None without one."""

    slot_context: int
    decode_low: float | None


def planned_rules(servers: Mapping[str, PlannedServer]) -> dict[str, Any]:
    """Per planned llama.cpp server (by server key), rules that compare what it does with its plan:
    - LlamaCppContextNearFull: the longest sequence a slot held (llamacpp:n_tokens_max, a high watermark since the
      start, server-context.cpp:4058) rose in the last 15 minutes to 90 % or more of the slot's context. This
      version exports no KV cache usage (server-task.cpp:1566-1590), so this is the context pressure it shows.
    - LlamaCppSlowDecode: generated tokens per second of generation time (per request: the seconds add up per
      slot, server-context.cpp:4110-4118) under the band's low edge for 15 minutes, while at most one request
      was in a slot at every scrape (the band is for one request; busy slots share the GPUs)."""
    rules: list[dict[str, Any]] = []
    for name, s in sorted(servers.items()):
        sel = f'job="{JOB_LLAMACPP}", server="{name}"'
        limit = int(CONTEXT_SHARE * s.slot_context)
        rules.append(
            {
                "alert": "LlamaCppContextNearFull",
                "expr": f"llamacpp:n_tokens_max{{{sel}}} >= {limit}\n"
                f"and\nchanges(llamacpp:n_tokens_max{{{sel}}}[{SLOW_WINDOW}]) > 0",
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": f"llama.cpp {name} on {{{{ $labels.host }}}}: a sequence of {{{{ $value }}}} tokens, "
                    f"near its slot's {s.slot_context}",
                    "description": f"A slot of llama-server {name} held a sequence of {{{{ $value }}}} tokens in the "
                    f"last {SLOW_WINDOW}, 90 % or more of the {s.slot_context} tokens the plan gives each slot: longer "
                    "conversations are cut or refused (llama.cpp shifts or stops at the slot's end).",
                    "runbook": "Raise the context (-c) or, with several slots splitting it, fewer slots or a shared KV "
                    "pool (-kvu), and let the plan say whether it still fits; or cap max_tokens at the gateway.",
                },
            }
        )
        if s.decode_low is None:
            continue
        per_request = (
            f"rate(llamacpp:tokens_predicted_total{{{sel}}}[{SLOW_WINDOW}])\n"
            f"/ rate(llamacpp:tokens_predicted_seconds_total{{{sel}}}[{SLOW_WINDOW}])"
        )
        rules.append(
            {
                "alert": "LlamaCppSlowDecode",
                "expr": f"{per_request} < {s.decode_low:.3g}\n"
                f"and\nmax_over_time(llamacpp:requests_processing{{{sel}}}[{SLOW_WINDOW}]) <= 1",
                "for": SLOW_WINDOW,
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": f"llama.cpp {name} on {{{{ $labels.host }}}} decodes at "
                    f'{{{{ printf "%.1f" $value }}}} tokens/s, under its planned {s.decode_low:.3g}',
                    "description": f'llama-server {name} generated {{{{ printf "%.1f" $value }}}} tokens per '
                    f"second of generation for {SLOW_WINDOW}, one request at a time, under the low edge of its "
                    f"planned decode band ({s.decode_low:.3g} tokens/s).",
                    "runbook": "Check the GPUs' clocks, power cap and temperature (GPU dashboard), and the start-up "
                    "log for layers or tensors left on the CPU; then `verify --calibrate` to measure the box.",
                },
            }
        )
    return {"groups": [{"name": "rocm-inference-llamacpp-planned", "rules": rules}]}


def planned_rules_text(servers: Mapping[str, PlannedServer]) -> str:
    """planned_rules as the file Prometheus reads (PLANNED_RULES_FILE)."""
    return dump_yaml(planned_rules(servers), sort_keys=False)


def grafana_files() -> dict[str, str]:
    """The llama.cpp dashboard, as planning/monitoring.grafana_files gives the shared ones: path -> content. It is
    provisioned only where a stack has a llama.cpp server, so the shipped stacks' Grafana does not change."""
    return {f"{GRAFANA_DASHBOARDS_DIR}/llamacpp.json": (RULES_DIR / "dashboard.json").read_text()}


def scrape_job(static_configs: Sequence[dict[str, Any]], key_file: str | None = KEY_FILE) -> dict[str, Any]:
    """The llama.cpp servers' scrape job: /metrics with the key as a Bearer credential read from a file (with
    --api-key the servers answer 401 without it), or without authorization where the servers take no key."""
    job: dict[str, Any] = {"job_name": JOB_LLAMACPP, "metrics_path": "/metrics"}
    if key_file is not None:
        job["authorization"] = {"type": "Bearer", "credentials_file": key_file}
    job["static_configs"] = [dict(c) for c in static_configs]
    return job


def progress_check(
    port: int,
    stall_s: int = STALL_MIN_S,
    *,
    host: str = "127.0.0.1",
    state_file: str = STATE_FILE,
    kill_after_s: int = KILL_AFTER_S,
    key_env: str = API_KEY_ENV,
    timeout_s: int = 5,
) -> str:
    """The healthcheck's python (standard library only) for llama-server: unhealthy while loading or failing,
    and on a stall past `stall_s`, the end. The state between checks is [n_decode_total, since when, PID 1's
    start time, when SIGTERM was sent]; loading starts the clock afresh at every check."""
    return (
        "import json,os,re,signal,sys,time,urllib.request as u\n"
        f"B='http://{host}:{port}';F={state_file!r};S={stall_s};K={kill_after_s};T={timeout_s}\n"
        + RESUME_OR_KILL
        + "def get(p,h):\n"
        " try:\n"
        "  r=u.urlopen(u.Request(B+p,headers=h),timeout=T);return r.status,r.read().decode()\n"
        " except u.HTTPError as e:return e.code,''\n"
        " except Exception:return 0,''\n"
        "def save():json.dump([last,since,boot,sent],open(F,'w'))\n"
        "h,_=get('/health',{})\n"
        # Loading (503): no clock runs, however long the model takes.
        "if h==503:last,since=None,now;save();sys.exit(1)\n"
        "if h!=200:sys.exit(1)\n"
        f"k=os.environ.get({key_env!r})\n"
        "m,t=get('/metrics',{'Authorization':'Bearer '+k} if k else {})\n"
        # No answer while /health says 200: the main loop is held (a decode, or wedged): no progress, work held.
        "if m==0:done,busy=last,True\n"
        # Metrics off or the key refused: nothing to judge progress by; unhealthy, no clock.
        "elif m!=200:since=now;save();sys.exit(1)\n"
        "else:\n"
        " v=lambda n:sum(float(x) for x in re.findall('^'+re.escape(n)+r'(?:\\{[^}]*\\})? (\\S+)$',t,re.M))\n"
        " busy=v('llamacpp:requests_processing')+v('llamacpp:requests_deferred')>0\n"
        " done=v('llamacpp:n_decode_total')\n"
        "if done!=last or not busy or last is None:since=now\n"
        "last=done\n"
        "stalled=now-since>=S\n"
        "if stalled and sent is None:\n"
        " print(f'no progress for {now-since:.0f} s with requests held: ending the server',flush=True)\n"
        " os.kill(1,signal.SIGTERM);sent=now\n"
        "save()\n"
        "sys.exit(1 if stalled else 0)\n"
    )
