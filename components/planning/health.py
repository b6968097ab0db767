"""How a vLLM server's healthcheck tells a hung engine from a busy one, and ends a hung one: pure.

vLLM 0.11's /health reports only an engine that has already died (AsyncLLM.check_health raises only
when `errored`), so a wedged engine answers 200 for ever; and Docker restarts on exit, never on
"unhealthy" (moby #28400). So the healthcheck judges progress from the server's own /metrics: while
requests are running or waiting, the token counters or the KV cache usage must move. vLLM 0.11
counts prompt tokens only when a prefill completes (vllm/v1/metrics/stats.py:251-252), so no counter
moves during one long chunked prefill; but the scheduler sends its stats after every engine step,
outputs or not (vllm/v1/core/sched/scheduler.py:1159-1167, "We must return the stats even if there
are no request outputs this step"), the API server records them (vllm/v1/engine/async_llm.py:512-523)
and `vllm:kv_cache_usage_perc` takes each step's value (vllm/v1/metrics/loggers.py:973): each chunk
allocates the KV blocks of its tokens (kv_cache_manager.py allocate_slots), so the gauge rises with
every chunk of a prefill of a model with a full-attention layer. (Read at v0.11.2+gfx906; unverified
on a GPU.) The stall window still exceeds the slowest measured prefill at max_model_len
(components/planning/prefill.py), for models whose every layer slides (the gauge stops rising once
the window is full) and in case the gauge does not move on some box. When the window passes without
progress, the check sends SIGTERM to PID 1 (the container runs with `init: true`, so that is
docker-init, which hands it to vLLM for a graceful exit), and SIGKILL to the server if it is still
there a minute later; the container exits and the restart policy brings it back. The state it keeps
between checks is keyed by PID 1's start time: a restarted container starts counting afresh.
VllmStalled (monitoring/alerts.rules.yml) fires at about 5 minutes, before this restart, so the hang
is seen, not hidden.
"""

from __future__ import annotations

import math

from components.planning.catalog import Architecture, Gpu
from components.planning.prefill import longest_prefill_seconds

# The alert fires at about 5 minutes of stall; the restart comes after it. A window past the deadline
# is a plan warning: the slowest measured prefill of a 70B model at 32K on two MI60 needs about 15 minutes.
STALL_MIN_S = 420
RESTART_DEADLINE_S = 1200
# A second signal when the first does not end the server (an engine stuck in a collective).
KILL_AFTER_S = 60
STATE_FILE = "/tmp/rocm-inference-progress"
# Every engine's check starts so (F: the state file, K: kill_after_s): the state of the previous check, afresh
# after a restart (PID 1's start time changed), and the SIGKILL of what is left a while after the SIGTERM.
RESUME_OR_KILL = (
    "now=time.time();boot=open('/proc/1/stat').read().split()[21]\n"
    "try:last,since,b,sent=json.load(open(F))\n"
    "except Exception:last,since,b,sent=None,now,boot,None\n"
    "if b!=boot:last,since,sent=None,now,None\n"
    "if sent is not None and now-sent>K:\n"
    " [os.kill(int(p),signal.SIGKILL) for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1,os.getpid())]\n"
    " sys.exit(1)\n"
)


def stall_seconds(arch: Architecture, max_model_len: int, tp: int, gpu: Gpu) -> int:
    """How long a server may hold requests without progress before it counts as hung: past the slowest prefill."""
    return max(STALL_MIN_S, math.ceil(1.2 * longest_prefill_seconds(arch, max_model_len, tp, gpu)))


def progress_check(
    port: int, stall_s: int, *, host: str = "127.0.0.1", state_file: str = STATE_FILE, kill_after_s: int = KILL_AFTER_S
) -> str:
    """The healthcheck's python (standard library only): unhealthy on a failed /health; on a stall, the end.

    The state between checks is [[tokens counted, KV cache usage], since when, PID 1's start time, when
    SIGTERM was sent]. A server shutting down answers no HTTP any more, so the SIGKILL step looks only
    at that state.
    """
    return (
        "import json,os,re,signal,sys,time,urllib.request as u\n"
        f"B='http://{host}:{port}';F={state_file!r};S={stall_s};K={kill_after_s}\n" + RESUME_OR_KILL + "try:\n"
        " ok=u.urlopen(B+'/health',timeout=5).status==200\n"
        " t=u.urlopen(B+'/metrics',timeout=5).read().decode()\n"
        "except Exception:\n"
        " ok=False\n"
        "if not ok:sys.exit(1)\n"
        "v=lambda n:sum(float(x) for x in re.findall('^'+re.escape(n)+r'(?:\\{[^}]*\\})? (\\S+)$',t,re.M))\n"
        "busy=v('vllm:num_requests_running')+v('vllm:num_requests_waiting')>0\n"
        "done=[v('vllm:generation_tokens_total')+v('vllm:prompt_tokens_total'),v('vllm:kv_cache_usage_perc')]\n"
        "if done!=last or not busy:since=now\n"
        "stalled=now-since>=S\n"
        "if stalled and sent is None:\n"
        " print(f'no progress for {now-since:.0f} s with requests in flight: ending the server',flush=True)\n"
        " os.kill(1,signal.SIGTERM);sent=now\n"
        "json.dump([done,since,boot,sent],open(F,'w'))\n"
        "sys.exit(1 if stalled else 0)\n"
    )
