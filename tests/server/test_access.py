"""Service-system credentials and roles, decided at the time of each call
(a fake clock and a stand-in call context; the e2e files run them on real
gateways)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gateway import crypto
from gateway.config import Credential, ServiceSystem
from gateway.errors import PermissionDenied, Unauthenticated
from gateway.server.access import ServiceRegistry

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class _Call:
    def __init__(self, token: str | None) -> None:
        self._md = (("authorization", f"Bearer {token}"),) if token else ()

    def invocation_metadata(self) -> Any:
        return self._md

    def auth_context(self) -> dict[str, Any]:
        return {}


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _registry(now: list[dt.datetime], **cred: Any) -> ServiceRegistry:
    creds = (Credential(kind="token", sha256=crypto.sha256_hex(b"tok-a"), **cred),)
    system = ServiceSystem(id="hebei-housing-fund", roles=("exchange",), credentials=creds)
    return ServiceRegistry([system], clock_ms=lambda: _ms(now[0]))


def test_token_outside_its_validity_interval_is_refused_saying_why() -> None:
    now = [T0]
    reg = _registry(now, not_before=T0, not_after=T0 + dt.timedelta(days=30))
    assert reg(_Call("tok-a")) == "hebei-housing-fund"
    now[0] = T0 - dt.timedelta(seconds=1)
    with pytest.raises(Unauthenticated, match="not yet valid"):
        reg(_Call("tok-a"))
    now[0] = T0 + dt.timedelta(days=30)
    with pytest.raises(Unauthenticated, match="expired"):
        reg(_Call("tok-a"))


def test_revoked_token_is_refused_from_the_revocation_time_on() -> None:
    now = [T0]
    reg = _registry(now, revoked_at=T0 + dt.timedelta(hours=1))
    assert reg(_Call("tok-a")) == "hebei-housing-fund"
    now[0] = T0 + dt.timedelta(hours=1)
    with pytest.raises(Unauthenticated, match="revoked"):
        reg(_Call("tok-a"))


def test_unknown_or_missing_token_is_unauthenticated() -> None:
    reg = _registry([T0])
    with pytest.raises(Unauthenticated, match="not registered"):
        reg(_Call("tok-b"))
    with pytest.raises(Unauthenticated, match="present a registered"):
        reg(_Call(None))


def test_credential_times_without_a_utc_offset_are_refused() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        Credential(kind="token", sha256="0" * 64, not_after=dt.datetime(2027, 1, 1))


def test_missing_role_is_permission_denied_naming_it_and_the_roles_held() -> None:
    reg = _registry([T0])
    reg.authorize("/dataexchange.gateway.v1.RecordExchange/GetRecords", "hebei-housing-fund")
    with pytest.raises(PermissionDenied) as err:
        reg.authorize("/dataexchange.gateway.v1.Ledger/GetEntries", "hebei-housing-fund")
    assert "lacks the role audit" in str(err.value) and "its roles: exchange" in str(err.value)
    with pytest.raises(PermissionDenied, match="statistics"):
        reg.authorize("/dataexchange.gateway.v1.Statistics/Query", "hebei-housing-fund")
    reg.authorize("/grpc.health.v1.Health/Check", "hebei-housing-fund")  # public


def test_revoked_token_still_listed_in_the_legacy_shorthand_is_refused() -> None:
    # A hand-edited gateway.toml: the token's one-line shorthand (never expires)
    # stays, and a [[service_systems.credentials]] table revokes the same token.
    # The revocation wins; another entry of the same digest does not revive it.
    digest = crypto.sha256_hex(b"tok-a")
    revoked = Credential(kind="token", sha256=digest, revoked_at=T0 - dt.timedelta(hours=1))
    system = ServiceSystem(
        id="hebei-housing-fund", roles=("exchange",), token_sha256=digest, credentials=(revoked,)
    )
    reg = ServiceRegistry([system], clock_ms=lambda: _ms(T0))
    with pytest.raises(Unauthenticated, match="revoked"):
        reg(_Call("tok-a"))


def test_token_registered_to_two_service_systems_is_refused_not_given_either_role() -> None:
    # Whichever system a shared credential matched last would decide the caller's
    # roles: an audit token copied into an exchange system's entry (or the reverse)
    # must not authenticate as either.
    digest = crypto.sha256_hex(b"tok-a")
    systems = [
        ServiceSystem(id="hebei-housing-fund", roles=("exchange",), token_sha256=digest),
        ServiceSystem(id="hebei-audit", roles=("audit",), token_sha256=digest),
    ]
    reg = ServiceRegistry(systems, clock_ms=lambda: _ms(T0))
    with pytest.raises(Unauthenticated, match="more than one service system"):
        reg(_Call("tok-a"))


def _bare_gateway(root: Any) -> Any:
    """Keys and a gateway.toml for Beijing in ``root``: enough for the service-system CLI."""
    from gateway.identity import generate_keys

    generate_keys(root / "keys", "110000", "北京")
    cfg = root / "gateway.toml"
    cfg.write_text(
        'jurisdiction = "110000"\nname = "北京"\nkey_dir = "keys"\ndata_dir = "data"\n'
        'data_source = "data/source.sqlite"\npolicies = "policies"\n'
        'trust_bundle = "bundle.json"\nauthority_key = "authority.pub"\n'
        '[listen]\npeer = "127.0.0.1:7101"\nservice = "127.0.0.1:7201"\n'
    )
    return cfg


def test_client_certificate_credential_expires_when_asked_not_when_its_certificate_does(
    tmp_path: Any,
) -> None:
    # `--expires-days 0.5`: the certificate is issued for whole days (one), but the
    # credential must run out after the twelve hours asked for, not the day.
    from gateway.config import load_config
    from tests.server.access_testkit import cli

    cfg = _bare_gateway(tmp_path)
    before = dt.datetime.now(dt.UTC)
    cli("service-system", "add", "--config", str(cfg), "--id", "bj-short",
        "--cert-out", str(tmp_path / "cc"), "--expires-days", "0.5")  # fmt: skip
    system = load_config(cfg).service_system("bj-short")
    assert system is not None
    (cred,) = system.credentials
    assert cred.not_after is not None
    assert cred.not_after <= before + dt.timedelta(hours=12, seconds=5)


def test_rotating_a_certificate_into_the_folder_of_the_one_still_valid_is_refused_unless_forced(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # The old client.key/client.crt stay valid for the overlap: writing the new ones
    # over them left the service system, mid-rollout, with neither.
    from gateway.cli import main
    from gateway.config import load_config
    from tests.server.access_testkit import cli

    cfg = _bare_gateway(tmp_path)
    cc = tmp_path / "cc"
    cli("service-system", "add", "--config", str(cfg), "--id", "bj-proc", "--cert-out", str(cc))
    old = {n: (cc / n).read_bytes() for n in ("client.key", "client.crt")}
    toml_before = cfg.read_bytes()
    rotate = ["service-system", "rotate", "--config", str(cfg), "--id", "bj-proc"]
    assert main([*rotate, "--cert-out", str(cc)]) == 2
    err = capsys.readouterr().err
    assert f"{cc}: client.key and client.crt already there" in err and "--force" in err
    assert len(err.splitlines()) == 1
    assert {n: (cc / n).read_bytes() for n in old} == old and cfg.read_bytes() == toml_before
    # A new folder, as the README's rotation section does; or --force.
    cli(*rotate, "--cert-out", str(tmp_path / "cc-2027"))
    assert (tmp_path / "cc-2027" / "client.crt").read_bytes() != old["client.crt"]
    cli(*rotate, "--cert-out", str(cc), "--force")
    assert (cc / "client.crt").read_bytes() != old["client.crt"]
    system = load_config(cfg).service_system("bj-proc")
    assert system is not None and len(system.all_credentials()) == 3
    # `add` into a folder holding another system's credential is refused the same way.
    assert main(["service-system", "add", "--config", str(cfg), "--id", "bj-other",
                 "--cert-out", str(cc)]) == 2  # fmt: skip
    assert "already there" in capsys.readouterr().err
