"""gateway.identity: key generation, on-disk layout, permissions, loading and its refusals."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import stat
from pathlib import Path

import pytest
from cryptography import x509

from gateway.crypto import b64, cert_fingerprint, make_tls_identity
from gateway.errors import ConfigurationError, InvalidArgument, StorageFailure
from gateway.identity import (
    ALL_FILES,
    PRIVATE_FILES,
    generate_keys,
    load_keys,
    load_public_descriptor,
    load_retired_seal_keys,
    load_service_ca,
    tls_server_name,
)

NOW = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def seeded_rng(seed: int):  # type: ignore[no-untyped-def]
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_generate_writes_every_file_with_owner_only_secrets(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    generate_keys(out, "110000", "北京市大数据中心", now=NOW)
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_FILES)
    for name in PRIVATE_FILES:
        assert mode(out / name) == 0o600, name
    assert mode(out / "tls.crt") == 0o644
    assert mode(out / "public.json") == 0o644
    assert mode(out) == 0o700
    # no temporary files left behind
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_load_round_trips_every_key(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path, "120000", "天津市大数据管理中心", rng=seeded_rng(1), now=NOW)
    loaded = load_keys(tmp_path)
    assert loaded.jurisdiction == "120000"
    assert loaded.name == "天津市大数据管理中心"
    assert loaded.signing.seed() == keys.signing.seed()
    assert loaded.ledger.seed() == keys.ledger.seed()
    assert loaded.seal.raw() == keys.seal.raw()
    assert loaded.pseudonym_key == keys.pseudonym_key
    assert loaded.tls == keys.tls
    assert loaded.public_descriptor() == keys.public_descriptor()


def test_injected_rng_makes_keys_reproducible_and_all_keys_distinct(tmp_path: Path) -> None:
    a = generate_keys(tmp_path / "a", "110000", "gw", rng=seeded_rng(7), now=NOW)
    b = generate_keys(tmp_path / "b", "110000", "gw", rng=seeded_rng(7), now=NOW)
    assert a.signing.seed() == b.signing.seed()
    assert a.pseudonym_key == b.pseudonym_key
    secrets = {a.signing.seed(), a.ledger.seed(), a.seal.raw(), a.pseudonym_key}
    assert len(secrets) == 4  # separate keys for separate purposes


def test_public_json_holds_no_private_material(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path, "130000", "河北省大数据中心", now=NOW)
    text = (tmp_path / "public.json").read_text("utf-8")
    doc = json.loads(text)
    assert set(doc) == {
        "jurisdiction",
        "name",
        "signing_key",
        "ledger_key",
        "witness_key",
        "seal_key",
        "tls_cert_pem",
        "tls_fingerprint",
    }
    assert keys.witness is not None
    for secret in (
        keys.signing.seed(),
        keys.ledger.seed(),
        keys.witness.seed(),
        keys.seal.raw(),
        keys.pseudonym_key,
    ):
        assert b64(secret) not in text
    assert "PRIVATE KEY" not in text
    assert doc["tls_fingerprint"] == cert_fingerprint(keys.tls.cert_pem)
    assert load_public_descriptor(tmp_path).jurisdiction == "130000"


def test_repr_redacts_private_keys(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path, "110000", "gw", now=NOW)
    text = repr(keys) + str(keys)
    assert b64(keys.signing.seed()) not in text
    assert "redacted" in text


def test_tls_certificate_names_gateway_and_hosts(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path, "110000", "gw", hostnames=("localhost", "gw.bj.local"), now=NOW)
    cert = x509.load_pem_x509_certificate(keys.tls.cert_pem)
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == tls_server_name("110000") == "gw-110000"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw-110000", "localhost", "gw.bj.local"]
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert ips == {"127.0.0.1", "::1"}


def test_refuses_to_overwrite_existing_keys_without_force(tmp_path: Path) -> None:
    first = generate_keys(tmp_path, "110000", "gw", now=NOW)
    before = (tmp_path / "signing.key").read_bytes()
    with pytest.raises(InvalidArgument, match="refusing to overwrite"):
        generate_keys(tmp_path, "110000", "gw", now=NOW)
    assert (tmp_path / "signing.key").read_bytes() == before
    second = generate_keys(tmp_path, "110000", "gw", now=NOW, force=True)
    assert second.signing.seed() != first.signing.seed()
    assert load_keys(tmp_path).signing.seed() == second.signing.seed()


def test_refuses_if_even_one_key_file_exists(tmp_path: Path) -> None:
    (tmp_path / "seal.key").write_text("x")
    with pytest.raises(InvalidArgument, match=r"seal\.key"):
        generate_keys(tmp_path, "110000", "gw", now=NOW)


@pytest.mark.parametrize("code", ["11000", "1100000", "011000", "abcdef", "", "11000x"])
def test_bad_jurisdiction_code_refused_before_writing(tmp_path: Path, code: str) -> None:
    with pytest.raises(InvalidArgument, match="jurisdiction"):
        generate_keys(tmp_path / "k", code, "gw", now=NOW)
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize("name", ["", "   ", "a\nb", "x" * 200, "北京\u202e心中", "a\u200bb"])
def test_bad_name_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidArgument, match="name"):
        generate_keys(tmp_path / "k", "110000", name, now=NOW)


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    generate_keys(tmp_path, "110000", "gw", now=NOW)
    (tmp_path / "ledger.key").unlink()
    with pytest.raises(StorageFailure, match=r"ledger\.key.*missing"):
        load_keys(tmp_path)


def test_group_readable_private_key_refused(tmp_path: Path) -> None:
    generate_keys(tmp_path, "110000", "gw", now=NOW)
    os.chmod(tmp_path / "seal.key", 0o640)
    with pytest.raises(ConfigurationError, match=r"seal\.key.*chmod 600"):
        load_keys(tmp_path)
    assert load_keys(tmp_path, strict_permissions=False).jurisdiction == "110000"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("not base64!!\n", "not valid base64"),
        (b64(b"short") + "\n", "decoded key length"),
    ],
)
def test_corrupt_key_file_is_named(tmp_path: Path, content: str, match: str) -> None:
    generate_keys(tmp_path, "110000", "gw", now=NOW)
    (tmp_path / "signing.key").write_text(content)
    with pytest.raises(ConfigurationError, match=match) as info:
        load_keys(tmp_path)
    assert "signing.key" in str(info.value)


def test_private_key_not_matching_public_json_refused(tmp_path: Path) -> None:
    generate_keys(tmp_path / "a", "110000", "gw", now=NOW)
    generate_keys(tmp_path / "b", "110000", "gw", now=NOW)
    os.replace(tmp_path / "b" / "ledger.key", tmp_path / "a" / "ledger.key")
    with pytest.raises(ConfigurationError, match="ledger_key does not match"):
        load_keys(tmp_path / "a")


def test_swapped_tls_certificate_refused(tmp_path: Path) -> None:
    generate_keys(tmp_path, "110000", "gw", now=NOW)
    other = make_tls_identity("gw-110000", ["gw-110000"], now=NOW)
    (tmp_path / "tls.crt").write_bytes(other.cert_pem)
    with pytest.raises(ConfigurationError, match=r"tls_fingerprint|not the private key"):
        load_keys(tmp_path)


def test_public_json_with_extra_field_refused(tmp_path: Path) -> None:
    generate_keys(tmp_path, "110000", "gw", now=NOW)
    doc = json.loads((tmp_path / "public.json").read_text("utf-8"))
    doc["endpoint"] = "evil:1"
    (tmp_path / "public.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigurationError, match=r"public\.json.*endpoint"):
        load_keys(tmp_path)


@pytest.mark.parametrize("host", ["", "bad host", "北京.local", "-x.local", "a..b"])
def test_bad_tls_hostname_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(InvalidArgument, match="TLS hostname"):
        generate_keys(tmp_path / "k", "110000", "gw", hostnames=(host,), now=NOW)
    assert not (tmp_path / "k").exists()


def test_tls_key_that_does_not_match_the_certificate_is_refused_at_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest as _pytest

    from gateway.crypto import make_tls_identity
    from gateway.identity import generate_keys, load_keys

    d = tmp_path / "keys"
    generate_keys(d, "110000", "北京市大数据中心")
    other = make_tls_identity("gw-110000", ["gw-110000"])
    (d / "tls.key").write_bytes(other.key_pem)
    with _pytest.raises(ConfigurationError, match="not the private key"):
        load_keys(d)


def test_swapped_service_ca_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    """The gateway's own CA files disagreeing is the operator's mistake, never a caller's."""
    generate_keys(tmp_path, "110000", "gw", now=NOW)
    assert load_service_ca(tmp_path, "110000").cert_pem
    other = make_tls_identity("service-ca", ["service-ca"], now=NOW)
    (tmp_path / "service-ca.crt").write_bytes(other.cert_pem)
    with pytest.raises(ConfigurationError, match=r"service-ca\.key is not the private key"):
        load_service_ca(tmp_path, "110000")


def test_corrupt_retired_seal_key_is_a_configuration_error(tmp_path: Path) -> None:
    generate_keys(tmp_path, "110000", "gw", now=NOW)
    (tmp_path / "seal.key.retired-20250101T000000Z").write_text("not a key\n")
    os.chmod(tmp_path / "seal.key.retired-20250101T000000Z", 0o600)
    with pytest.raises(ConfigurationError, match=r"seal\.key\.retired"):
        load_retired_seal_keys(tmp_path)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _DiskCounter:
    """Counts key-file reads and looks (stat of the key directory) by SealKeys."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import gateway.identity as identity

        self.reads = self.looks = 0
        real_read, real_stamp = identity._read, identity.SealKeys._disk_stamp

        def read(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.reads += 1
            return real_read(*args, **kwargs)

        def stamp(keys):  # type: ignore[no-untyped-def]
            self.looks += 1
            return real_stamp(keys)

        monkeypatch.setattr(identity, "_read", read)
        monkeypatch.setattr(identity.SealKeys, "_disk_stamp", stamp)


def _garbage(keys) -> bytes:  # type: ignore[no-untyped-def]
    from gateway import crypto

    return crypto.seal(crypto.SealPrivateKey.generate().public_key, "dom", b"", b"")


def _seal_keys(tmp_path: Path, clock: _Clock):  # type: ignore[no-untyped-def]
    from gateway.identity import SealKeys
    from gateway.limits import Limits

    keys = generate_keys(tmp_path, "110000", "北京", now=NOW)
    limits = Limits(seal_key_recheck_seconds=5.0)
    return SealKeys(keys.seal, load_retired_seal_keys(tmp_path), tmp_path, limits, clock=clock)


def test_garbage_payloads_from_a_member_never_make_the_holder_read_its_key_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway import crypto
    from gateway.errors import CryptoFailure

    clock = _Clock()
    keys = _seal_keys(tmp_path, clock)
    disk = _DiskCounter(monkeypatch)
    stranger = crypto.SealPrivateKey.generate().public_key
    mine = crypto.seal(keys.current.public_key, "dom", b"x", b"ctx")
    for i in range(200):
        # Sealed to another key, or ours with its tag broken.
        blob = (
            crypto.seal(stranger, "dom", b"x", b"ctx")
            if i % 2
            else mine[:-1] + bytes([mine[-1] ^ 1])
        )
        with pytest.raises(CryptoFailure):
            keys.open("dom", blob, b"ctx")
        clock.now += 0.1  # 20 s of garbage: the directory is looked at every 5 s, never read
    assert disk.reads == 0
    assert disk.looks <= 5
    # What is sealed to the key in memory opens without touching the disk.
    looks = disk.looks
    assert keys.open("dom", crypto.seal(keys.current.public_key, "dom", b"ok", b"c"), b"c") == b"ok"
    assert (disk.reads, disk.looks) == (0, looks)


def test_a_sealing_key_rotated_on_disk_is_read_once_and_then_opens_from_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway import crypto
    from gateway.errors import CryptoFailure
    from gateway.identity import rotate_keys

    clock = _Clock()
    keys = _seal_keys(tmp_path, clock)
    with pytest.raises(CryptoFailure):  # looks now: nothing changed, nothing read
        keys.open("dom", _garbage(keys), b"")
    new = rotate_keys(tmp_path, ["sealing"], now=NOW).seal.public_key
    disk = _DiskCounter(monkeypatch)
    sealed = crypto.seal(new, "dom", b"rows", b"ctx")
    with pytest.raises(CryptoFailure):  # looked at 0 s ago: not yet
        keys.open("dom", sealed, b"ctx")
    assert (disk.reads, disk.looks) == (0, 0)
    clock.now += 5
    assert keys.open("dom", sealed, b"ctx") == b"rows"  # the rotation is seen and read
    assert (disk.reads, disk.looks) == (2, 1)  # seal.key and the retired one
    for _ in range(10):
        assert keys.open("dom", crypto.seal(new, "dom", b"more", b""), b"") == b"more"
        with pytest.raises(CryptoFailure):
            keys.open("dom", _garbage(keys), b"")
        clock.now += 5
    assert disk.reads == 2  # unchanged directory: looked at, never re-read
    # The explicit hook (SIGHUP, a new trust bundle) reads at once.
    newer = rotate_keys(tmp_path, ["sealing"], now=NOW).seal.public_key
    assert [k.public_key for k in keys.reload()] == [newer]
    assert keys.open("dom", crypto.seal(newer, "dom", b"z", b""), b"") == b"z"
