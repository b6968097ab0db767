"""Day-two predictions the reviewer reads word for word: a replacement trigger seen for the first time,
delete-before-replace through dependents of dependents, and each downtime line as it is printed.

The rules are components/planning/steps.py's (the engine's, cited there); the lines are
components/tools/review.py's. Each test states the whole expected result, so that a changed rule or a
changed sentence fails it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.planning.steps import Resource, predict
from components.tools.review import diff
from tests.conftest import shipped_plan
from tests.test_day_two import _set, day_two

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"


def _container(name: str, image: str, options: dict[str, Any] | None = None, **inputs: Any) -> Resource:
    return Resource(name, CONTAINER, {"image": image, **inputs}, {"provider": "p", **(options or {})}, True)


# --------------------------------------------------------------------------- the replacement trigger


def test_a_replacement_trigger_set_for_the_first_time_replaces_nothing() -> None:
    """SG v3.259.0 L1795-1812, L3624-3640: the trigger replaces only when it was set before and changed. A
    deployment made before the project set triggers (issue 26) has none in state: its first `up` with them must
    restart nothing. A replacement the engine starts itself is create-first unless the program says
    delete_before_replace (SG L2040-2046: the provider's delete-first is for its ForceNew fields)."""
    old = _container("server", "img:1")
    new = _container("server", "img:1", {"replacement_trigger": "gpu-a"})
    assert predict([old], [new]) == ([], [])
    # its neighbours: a trigger that changes replaces; one that goes away does not
    moved = _container("server", "img:1", {"replacement_trigger": "gpu-b"})
    steps, verdicts = predict([new], [moved])
    assert [(s.op, s.name, s.why) for s in steps] == [
        ("create", "server", ("replacement_trigger",)),
        ("delete", "server", ("replacement_trigger",)),
    ], "issue 26 defect 16: no ForceNew field changed, and the program did not ask for delete-first"
    assert [(v.change, v.keys) for v in verdicts] == [("replace", ["replacement_trigger"])]
    assert predict([moved], [old]) == ([], [])
    # the program's delete_before_replace (every container of this project sets it) makes it delete-first
    first = {"delete_before_replace": True}
    steps, _ = predict([_container("server", "img:1", first | {"replacement_trigger": "gpu-a"})],
                       [_container("server", "img:1", first | {"replacement_trigger": "gpu-b"})])  # fmt: skip
    assert [(s.op, s.name) for s in steps] == [("delete", "server"), ("create", "server")]
    # and a ForceNew field (the image) is delete-first for a Container whatever the program says
    steps, _ = predict([old], [_container("server", "img:2")])
    assert [(s.op, s.name) for s in steps] == [("delete", "server"), ("create", "server")]


def test_a_deployment_from_before_the_triggers_sees_no_step_on_its_first_up_with_them() -> None:
    """The shipped fleet plan against the same plan without its triggers (the state such a deployment left)."""
    now = shipped_plan("fleet")
    before = json.loads(json.dumps(now.as_json()))
    stripped = 0
    for r in before["resources"]:
        if r.get("options", {}).pop("replacement_trigger", None) is not None:
            stripped += 1
    assert stripped >= 10, "the fleet's containers, images and volumes carry the host trigger"
    d = diff(before, now, "before")
    assert (d.steps, d.outages, d.changes) == ([], [], [])


# --------------------------------------------------------------------------- delete-before-replace


def test_delete_before_replace_deletes_dependents_of_dependents_first_and_creates_them_again() -> None:
    """SG L2043-2156 and calculateDependentReplacements (L3268-3415): replacing `base` makes the inputs `mid`
    takes from it unknown, which replaces `mid`, which makes `top`'s unknown in turn. The engine deletes the
    farthest dependent first, then back to `base`, and creates each again as the program registers it. A
    dependent by `depends_on` alone (`side`) is not deleted. The old state lists `top` before `mid`, so that
    one pass over it would not find `top`."""
    base_old = _container("base", "img:1")
    mid_old = _container("mid", "img:1", {"property_dependencies": {"envs": ["base"]}}, envs=["A=base"])
    top_old = _container("top", "img:1", {"property_dependencies": {"envs": ["mid"]}}, envs=["B=mid"])
    side = _container("side", "img:1", {"depends_on": ["top"]})
    base_new = _container("base", "img:2")
    steps, verdicts = predict([top_old, side, mid_old, base_old], [base_new, mid_old, top_old, side])
    assert [s.line() for s in steps] == [
        "delete    top (envs): deleted first: base is replaced",
        "delete    mid (envs): deleted first: base is replaced",
        "delete    base (image): replaced, the old one deleted first",
        "create    base (image): the replacement",
        "create    mid: again, deleted before base was replaced",
        "create    top: again, deleted before base was replaced",
    ]
    assert [(v.name, v.change) for v in verdicts] == [("base", "replace"), ("mid", "replace"), ("top", "replace")]


def test_a_protected_dependent_two_levels_down_stops_the_replacement() -> None:
    base_old = _container("base", "img:1")
    mid_old = _container("mid", "img:1", {"property_dependencies": {"envs": ["base"]}}, envs=["A=base"])
    cache = Resource(
        "cache", VOLUME, {"name": "c"}, {"protect": True, "property_dependencies": {"name": ["mid"]}}, True
    )
    steps, _ = predict([cache, mid_old, base_old], [_container("base", "img:2"), mid_old, cache])
    assert [s.line() for s in steps][:2] == [
        "refused   cache (name): protected, as part of replacing base",
        "delete    mid (envs): deleted first: base is replaced",
    ]


# --------------------------------------------------------------------------- the downtime lines


def _step_of(d: Any, op: str, name: str) -> int:
    """The 1-based number of the step the review's lines count in."""
    return [[w.rstrip(":") for w in line.split()[:2]] for line in d.steps].index([op, name]) + 1


def test_the_downtime_line_of_a_replaced_vllm_server(tmp_path: Path) -> None:
    d = day_two(tmp_path, "small-chat", _set("vllm.health_interval", 30))
    assert d.outages == [
        "vllm-container: down from step 1 to step 2: the OpenAI endpoint is down about 3 min while 9 GiB of "
        "weights load (estimate)"
    ]
    (change,) = d.changes
    # Issue 26 defect 13: nothing is downloaded for a health setting (the download is untouched)
    assert change.note == "the OpenAI endpoint is down about 3 min while 9 GiB of weights load (estimate)"


def test_the_downtime_line_of_a_model_change_names_the_download_that_runs_before(tmp_path: Path) -> None:
    d = day_two(tmp_path, "small-chat", _set("vllm.model", "Qwen/Qwen2.5-7B-Instruct-AWQ"))
    (line,) = [o for o in d.outages if o.startswith("vllm-container")]
    assert line.endswith("weights load (estimate); the download runs before, while the old server keeps serving")


def test_the_downtime_line_of_a_replaced_embeddings_server(tmp_path: Path) -> None:
    d = day_two(tmp_path, "small-chat", _set("embeddings.health_interval", 30))
    assert d.outages == [
        "embeddings-container: down from step 1 to step 2: the service is down about 60 s while it restarts (estimate)"
    ]


def test_the_downtime_line_of_a_server_removed_from_the_fleet(tmp_path: Path) -> None:
    def remove(values: dict[str, Any], secure: dict[str, Any]) -> None:
        del values["servers"]["chat-b"]

    d = day_two(tmp_path, "fleet", remove)
    gateway = (_step_of(d, "delete", "gateway-container"), _step_of(d, "create", "gateway-container"))
    prometheus = (_step_of(d, "delete", "prometheus-container"), _step_of(d, "create", "prometheus-container"))
    assert d.outages == [
        f"gateway-container: down from step {gateway[0]} to step {gateway[1]}: the service is down about 60 s "
        "while it restarts (estimate)",
        f"prometheus-container: down from step {prometheus[0]} to step {prometheus[1]}: the service is down "
        "about 60 s while it restarts (estimate)",
        f"chat-b-container: removed from the stack at step {_step_of(d, 'delete', 'chat-b-container')}",
    ]
    assert (
        d.steps[_step_of(d, "delete", "chat-b-container") - 1] == "delete    chat-b-container: no longer in the program"
    )
    assert "forgotten chat-b-cache: dropped from state; it stays where it runs" in d.steps


def test_a_server_only_updated_has_no_downtime_line(tmp_path: Path) -> None:
    """A rotated Hub token updates the download, whose update command is `true` (container.py's
    on_secret_change): the server keeps serving and the download does not run again. Only Infinity, which
    downloads at its own start, is replaced. (The review used to say the download "runs once more".)"""
    old = {"hf_token": {"secure": "v1:AAAA:token-one"}}
    d = day_two(tmp_path, "big-chat", lambda v, s: s.update(hf_token={"secure": "v1:AAAA:token-two"}), old)
    assert d.steps[0] == "update    vllm-prefetch (stdin)"
    assert [(c.name, c.kind, c.settings, c.note) for c in d.changes] == [
        (
            "vllm-prefetch",
            "update",
            ["stdin: a secret in it changed"],
            "does not run again: an update runs its `update` command (true) instead",
        ),
        (
            "embeddings-container",
            "replace",
            ["envs: HF_TOKEN changed (secrets)"],
            "the service is down about 60 s while it restarts (estimate)",
        ),
    ]
    assert d.outages == [
        "embeddings-container: down from step 2 to step 3: the service is down about 60 s while it restarts (estimate)"
    ]
