"""The settings check's normalisations of what names a machine (components/settings/validate.py `_machine`):
pairs of fleet shapes that differ only in that normalisation, refused, beside their legitimate neighbours.

Each host here is given an address of its own (10.0.0.5, 10.0.0.6) unlike its SSH name, so that only the
Docker URLs can make two hosts one machine."""

from __future__ import annotations

from typing import Any

import pytest

from tests.stacks import errors, values_of

SECRETS = ("gateway_api_key",)
SOURCE = "Pulumi.test.yaml: rocm-inference:"


def _fleet(docker_a: str, docker_b: str, address_a: str = "10.0.0.5", address_b: str = "10.0.0.6") -> dict[str, Any]:
    values = values_of("fleet")
    for name, docker, address in (("gpu-a", docker_a, address_a), ("gpu-b", docker_b, address_b)):
        values["hosts"][name] |= {"docker": docker, "address": address}
    return values


def _one_machine(values: dict[str, Any]) -> list[str]:
    return [e for e in errors(values, SECRETS) if "one machine configured as two hosts" in e]


@pytest.mark.parametrize(
    ("docker_b", "why"),
    [
        ("ssh://ops@GPU-A.LAN", "a host name in another case"),
        ("ssh://ops@gpu-a.lan:22", "the default port written out"),
        ("ssh://root@gpu-a.lan", "another user"),
    ],
)
def test_one_ssh_host_written_another_way_is_one_machine(docker_b: str, why: str) -> None:
    assert _one_machine(_fleet("ssh://ops@gpu-a.lan", docker_b)) == [
        f"{SOURCE}hosts.gpu-b.docker is {docker_b!r}, which is the machine of rocm-inference:hosts.gpu-a (its docker "
        "'ssh://ops@gpu-a.lan'): one machine configured as two hosts would have its GPUs given out twice; give each "
        "host its own docker and address, or make them one host with all the GPUs and servers"
    ], why


def test_one_port_of_one_name_written_twice_is_one_machine() -> None:
    assert _one_machine(_fleet("ssh://ops@gw.lan:2222", "ssh://ops@GW.lan:2222"))


@pytest.mark.parametrize(
    ("docker_a", "docker_b"),
    [
        ("ssh://ops@gpu-a.lan", "ssh://ops@gpu-b.lan"),  # the shipped shape
        ("ssh://ops@gw.lan:2222", "ssh://ops@gw.lan:2223"),  # two machines behind one NAT
        ("ssh://ops@gw.lan:2222", "ssh://ops@gw.lan"),  # its port 22 forwarded to a third
    ],
)
def test_other_machines_are_two_hosts(docker_a: str, docker_b: str) -> None:
    assert errors(_fleet(docker_a, docker_b), SECRETS) == []


def test_an_address_is_compared_without_its_case_and_against_the_other_hosts_ssh_name() -> None:
    by_case = _fleet("ssh://ops@gpu-a.lan", "ssh://ops@gpu-b.lan", "Box-1.lan", "box-1.LAN")
    assert _one_machine(by_case) == [
        f"{SOURCE}hosts.gpu-b.address is 'box-1.LAN', which is the machine of rocm-inference:hosts.gpu-a (its address "
        "'Box-1.lan'): one machine configured as two hosts would have its GPUs given out twice; give each host its own "
        "docker and address, or make them one host with all the GPUs and servers"
    ]
    by_ssh = _fleet("ssh://ops@gpu-a.lan", "ssh://ops@gpu-b.lan", address_b="GPU-A.lan")
    assert [e.split(",")[0] for e in _one_machine(by_ssh)] == [f"{SOURCE}hosts.gpu-b.address is 'GPU-A.lan'"]


def test_loopback_addresses_name_no_machine() -> None:
    """`localhost` and 127.0.0.x are every machine's own: two hosts so advertised are not one machine by it
    (another check may still have its say about advertising loopback)."""
    for address in ("localhost", "127.0.0.1"):
        assert _one_machine(_fleet("ssh://ops@gpu-a.lan", "ssh://ops@gpu-b.lan", address, address)) == [], address
