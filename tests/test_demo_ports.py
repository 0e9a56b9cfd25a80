"""Listening ports for demo, test and benchmark gateways (``gateway.demo.setup.free_port``)."""

from __future__ import annotations

import pytest

from gateway.demo.setup import PORT_RANGE_ENV, free_port, port_range
from gateway.errors import ConfigurationError


def test_ports_come_from_the_range_the_runner_set_and_are_never_handed_out_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PORT_RANGE_ENV, "21000-23999")
    ports = [free_port() for _ in range(50)]
    assert all(21000 <= p <= 23999 for p in ports)
    assert len(set(ports)) == len(ports)


def test_default_range_stays_below_the_kernels_ephemeral_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A port in the ephemeral range could be taken by any outgoing connection
    before the gateway binds it."""
    monkeypatch.delenv(PORT_RANGE_ENV, raising=False)
    lo, hi = port_range()
    with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
        ephemeral = int(f.read().split()[0])
    assert lo == 10000 and hi == ephemeral - 1


@pytest.mark.parametrize("bad", ["30000", "30000-20000", "80-90", "a-b", "20000-70000"])
def test_malformed_range_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv(PORT_RANGE_ENV, bad)
    with pytest.raises(ConfigurationError, match=PORT_RANGE_ENV):
        free_port()
