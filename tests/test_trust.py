"""gateway.trust: signing and verifying the federation trust bundle, and every refusal."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto import (
    SealPrivateKey,
    SigningKey,
    TlsIdentity,
    b64,
    make_tls_identity,
    sha256_hex,
)
from gateway.domains import PEER_RECORD_REQUEST, TRUST_BUNDLE
from gateway.errors import InvalidArgument, NotFound, StorageFailure, TrustBundleRejected
from gateway.limits import Limits
from gateway.trust import (
    BundleVersionStore,
    FileVersionStore,
    Member,
    TrustBundle,
    accept_bundle,
    authority_key_id,
    canonical_json,
    load_bundle,
    read_authority_key,
    sign_bundle,
    verify_bundle,
    verify_bundle_for_reissue,
)

ISSUED = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
EXPIRES = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
FED = "京津冀数据共享联盟"
AUTHORITY = SigningKey(bytes(range(32)))
OTHER_AUTHORITY = SigningKey(bytes(range(1, 33)))
CODES = ("110000", "120000", "130000", "140000")


@functools.cache
def tls(code: str) -> TlsIdentity:
    return make_tls_identity(f"gw-{code}", [f"gw-{code}"], now=ISSUED)


def der_of(pem: bytes) -> bytes:
    """Independent of gateway.crypto: the DER inside a one-certificate PEM."""
    return base64.b64decode(b"".join(pem.splitlines()[1:-1]))


def member(code: str, datasets: tuple[str, ...] = ("si_contributions",), **kw: Any) -> Member:
    n = int(code[:2])
    ident = tls(code)
    fields: dict[str, Any] = {
        "jurisdiction": code,
        "name": f"网关{code}",
        "endpoint": f"gw-{code}.example:7{n:03d}",
        "signing_key": SigningKey(bytes([n]) * 32).verify_key,
        "ledger_key": SigningKey(bytes([n + 100]) * 32).verify_key,
        "seal_key": SealPrivateKey(bytes([n + 200]) * 32).public_key,
        "tls_cert_pem": ident.cert_pem,
        "tls_fingerprint": sha256_hex(der_of(ident.cert_pem)),
        "datasets": datasets,
    }
    fields.update(kw)
    return Member(**fields)


def signed(members: tuple[Member, ...] = (), version: int = 3, **kw: Any) -> bytes:
    args: dict[str, Any] = {
        "federation": FED,
        "version": version,
        "issued_at": ISSUED,
        "expires_at": EXPIRES,
        "members": members,
        "authority": AUTHORITY,
    }
    args.update(kw)
    return sign_bundle(**args)


def envelope(data: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(data)
    return doc


def payload_doc(data: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(base64.b64decode(envelope(data)["payload"]))
    return doc


def resign(doc: dict[str, Any], key: SigningKey = AUTHORITY, domain: str = TRUST_BUNDLE) -> bytes:
    """Sign an arbitrary payload document: lets tests reach the verifier's
    structural checks with a valid signature (sign_bundle refuses to produce them)."""
    payload = canonical_json(doc)
    return json.dumps(
        {
            "payloadType": TRUST_BUNDLE,
            "payload": b64(payload),
            "signatures": [
                {"keyid": authority_key_id(key.verify_key), "sig": b64(key.sign(domain, payload))}
            ],
        }
    ).encode()


def verify(data: bytes, **kw: Any) -> TrustBundle:
    args: dict[str, Any] = {"authority_key": AUTHORITY.verify_key, "now": NOW}
    args.update(kw)
    return verify_bundle(data, **args)


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------


def test_round_trip_three_members() -> None:
    ms = (member("130000"), member("110000"), member("120000", ("a", "b")))
    b = verify(signed(ms))
    assert b.federation == FED
    assert b.version == 3
    assert b.issued_at == ISSUED and b.expires_at == EXPIRES
    assert b.jurisdictions() == ("110000", "120000", "130000")  # sorted on signing
    assert b.member("120000") == ms[2]
    assert b.member("120000").origin == "120000.gateway.dataexchange.cn/ledger"


_members = st.lists(st.sampled_from(CODES), unique=True, max_size=4)
_datasets = st.lists(
    st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), unique=True, max_size=5
)
_names = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() != "")


@settings(max_examples=60, deadline=None)
@given(
    codes=_members,
    datasets=_datasets,
    federation=_names,
    version=st.integers(1, 2**53 - 1),
    issued_s=st.integers(0, 2_000_000_000),
    validity_s=st.integers(1, 10 * 365 * 86400),
)
def test_round_trip_property(
    codes: list[str],
    datasets: list[str],
    federation: str,
    version: int,
    issued_s: int,
    validity_s: int,
) -> None:
    issued = dt.datetime.fromtimestamp(issued_s, dt.UTC)
    expires = issued + dt.timedelta(seconds=validity_s)
    ms = tuple(member(c, tuple(datasets)) for c in codes)
    data = signed(ms, version, federation=federation, issued_at=issued, expires_at=expires)
    b = verify(data, now=issued)
    assert (b.federation, b.version, b.issued_at, b.expires_at) == (
        federation,
        version,
        issued,
        expires,
    )
    assert set(b.members) == set(ms)
    assert b.digest == sha256_hex(base64.b64decode(envelope(data)["payload"]))


def test_signing_is_deterministic_and_canonical() -> None:
    ms = (member("110000"), member("120000"))
    assert signed(ms) == signed(tuple(reversed(ms)))
    raw = base64.b64decode(envelope(signed(ms))["payload"])
    assert raw == canonical_json(json.loads(raw))
    assert "京津冀".encode() in raw  # ensure_ascii=False


def test_member_lookup_and_root_certificates() -> None:
    b = verify(signed((member("110000"), member("120000"))))
    with pytest.raises(NotFound, match=f"jurisdiction 130000 is not a member of federation {FED}"):
        b.member("130000")
    fp = b.member("120000").tls_fingerprint
    assert b.member_by_fingerprint(fp) == b.member("120000")
    assert b.member_by_fingerprint(fp.upper()) == b.member("120000")
    assert b.member_by_fingerprint("00" * 32) is None
    roots = b.root_certificates_pem()
    assert roots.count(b"-----BEGIN CERTIFICATE-----") == 2
    assert tls("110000").cert_pem in roots and tls("120000").cert_pem in roots


# --------------------------------------------------------------------------
# Signature refusals
# --------------------------------------------------------------------------


def test_refuses_bundle_with_no_signatures() -> None:
    env = envelope(signed())
    env["signatures"] = []
    with pytest.raises(TrustBundleRejected, match="unsigned"):
        verify(json.dumps(env).encode())


def test_refuses_bundle_with_empty_signature() -> None:
    env = envelope(signed())
    env["signatures"][0]["sig"] = ""
    with pytest.raises(TrustBundleRejected, match="unsigned"):
        verify(json.dumps(env).encode())


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_tampered_payload_byte_is_refused(data: st.DataObject) -> None:
    good = signed((member("110000"),))
    env = envelope(good)
    raw = bytearray(base64.b64decode(env["payload"]))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    env["payload"] = b64(bytes(raw))
    with pytest.raises(TrustBundleRejected, match="signature does not verify"):
        verify(json.dumps(env).encode())


def test_signature_is_checked_before_payload_is_parsed() -> None:
    env = envelope(signed())
    env["payload"] = b64(b"{not json")
    with pytest.raises(TrustBundleRejected, match="signature does not verify"):
        verify(json.dumps(env).encode())


def test_refuses_bundle_signed_by_another_authority() -> None:
    data = signed(authority=OTHER_AUTHORITY)
    with pytest.raises(TrustBundleRejected, match="not signed by this federation's authority"):
        verify(data)


def test_foreign_key_id_is_not_echoed_raw() -> None:
    env = envelope(signed())
    env["signatures"][0]["keyid"] = "\x1b[31mred"
    with pytest.raises(TrustBundleRejected, match=r"found \(not a key id\)") as info:
        verify(json.dumps(env).encode())
    assert "\x1b" not in str(info.value)


def test_refuses_other_authority_claiming_our_key_id() -> None:
    env = envelope(signed(authority=OTHER_AUTHORITY))
    env["signatures"][0]["keyid"] = authority_key_id(AUTHORITY.verify_key)
    with pytest.raises(TrustBundleRejected, match="signature does not verify"):
        verify(json.dumps(env).encode())


def test_refuses_signature_made_for_another_domain() -> None:
    doc = payload_doc(signed())
    with pytest.raises(TrustBundleRejected, match="signature does not verify"):
        verify(resign(doc, domain=PEER_RECORD_REQUEST))


def test_one_good_signature_among_bad_ones_is_enough() -> None:
    env = envelope(signed())
    good = env["signatures"][0]
    env["signatures"] = [{"keyid": good["keyid"], "sig": b64(bytes(64))}, good]
    assert verify(json.dumps(env).encode()).version == 3


def test_refuses_wrong_payload_type() -> None:
    env = envelope(signed())
    env["payloadType"] = PEER_RECORD_REQUEST
    with pytest.raises(TrustBundleRejected, match="payloadType: expected"):
        verify(json.dumps(env).encode())


# --------------------------------------------------------------------------
# Validity window and version
# --------------------------------------------------------------------------


def test_refuses_expired_bundle_and_says_when() -> None:
    data = signed()
    assert verify(data, now=EXPIRES - dt.timedelta(seconds=1)).version == 3
    with pytest.raises(TrustBundleRejected, match=r"expired at 2026-01-01T00:00:00Z"):
        verify(data, now=EXPIRES)


def test_refuses_bundle_issued_in_the_future() -> None:
    data = signed()
    assert verify(data, now=ISSUED - dt.timedelta(minutes=4)).version == 3
    with pytest.raises(TrustBundleRejected, match="not yet valid"):
        verify(data, now=ISSUED - dt.timedelta(hours=1))


def test_refuses_older_version_than_already_accepted() -> None:
    data = signed(version=3)
    assert verify(data, min_version=3).version == 3
    with pytest.raises(TrustBundleRejected, match="version 3 is older than version 4"):
        verify(data, min_version=4)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(InvalidArgument, match="timezone-aware"):
        verify(signed(), now=dt.datetime(2025, 6, 1))


def test_version_store_survives_restart_and_refuses_older(tmp_path: Path) -> None:
    store = FileVersionStore.in_dir(tmp_path)
    assert store.highest() == 0
    b4 = verify(signed(version=4))
    accept_bundle(b4, store)
    # "restart": a fresh store over the same file
    store2 = FileVersionStore.in_dir(tmp_path)
    assert store2.highest() == 4
    with pytest.raises(TrustBundleRejected, match="version 3 is older than version 4"):
        verify(signed(version=3), min_version=store2.highest())
    with pytest.raises(TrustBundleRejected, match="older"):
        accept_bundle(verify(signed(version=3)), store2)
    with pytest.raises(TrustBundleRejected, match="older"):
        store2.record(2)
    accept_bundle(b4, store2)  # the same bundle again is fine
    accept_bundle(verify(signed(version=5)), store2)
    assert FileVersionStore.in_dir(tmp_path).highest() == 5


def test_version_store_refuses_different_bundle_with_same_version(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path / "state.json")
    accept_bundle(verify(signed(version=4)), store)
    forked = verify(signed((member("110000"),), version=4))
    with pytest.raises(TrustBundleRejected, match="differs from the version 4 already accepted"):
        accept_bundle(forked, store)


def test_version_store_record_keeps_digest(tmp_path: Path) -> None:
    store = FileVersionStore(tmp_path / "state.json")
    b = verify(signed(version=4))
    accept_bundle(b, store)
    store.record(4)  # the lead's plain record() must not forget the digest
    assert store.highest_digest() == b.digest


@pytest.mark.parametrize("content", [b"", b"{", b'{"highest_version": -1}', b'{"x": 1}', b"[]"])
def test_corrupt_version_state_is_an_error_not_a_reset(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(StorageFailure, match="corrupt"):
        FileVersionStore(path).highest()


# --------------------------------------------------------------------------
# Malformed bundles (validly signed where it matters)
# --------------------------------------------------------------------------


def test_refuses_bad_base64_payload() -> None:
    env = envelope(signed())
    env["payload"] = "%%%not-base64%%%"
    with pytest.raises(TrustBundleRejected, match="payload is not valid base64"):
        verify(json.dumps(env).encode())


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[1,2]", b"{" * 100_000, b"null"])
def test_refuses_non_envelope_bytes(data: bytes) -> None:
    with pytest.raises(TrustBundleRejected, match="malformed"):
        verify(data)


def test_refuses_extra_key_in_envelope() -> None:
    env = envelope(signed())
    env["comment"] = "hi"
    with pytest.raises(TrustBundleRejected, match="envelope field comment"):
        verify(json.dumps(env).encode())


def test_refuses_extra_key_in_signed_payload() -> None:
    doc = payload_doc(signed())
    doc["admin"] = True
    with pytest.raises(TrustBundleRejected, match="payload field admin"):
        verify(resign(doc))


def test_refuses_extra_key_in_signed_member() -> None:
    doc = payload_doc(signed((member("110000"),)))
    doc["members"][0]["role"] = "root"
    with pytest.raises(TrustBundleRejected, match=r"members\.0\.role"):
        verify(resign(doc))


def test_refuses_duplicate_json_keys_in_payload() -> None:
    raw = canonical_json(payload_doc(signed()))
    raw = raw.replace(b'"version":3', b'"version":9,"version":3')
    env = {
        "payloadType": TRUST_BUNDLE,
        "payload": b64(raw),
        "signatures": [
            {
                "keyid": authority_key_id(AUTHORITY.verify_key),
                "sig": b64(AUTHORITY.sign(TRUST_BUNDLE, raw)),
            }
        ],
    }
    with pytest.raises(TrustBundleRejected, match="duplicate key 'version'"):
        verify(json.dumps(env).encode())


@pytest.mark.parametrize("code", ["11000", "011000", "1100001", "１１００００", "abcdef"])
def test_refuses_bad_jurisdiction_code(code: str) -> None:
    doc = payload_doc(signed((member("110000"),)))
    doc["members"][0]["jurisdiction"] = code
    with pytest.raises(TrustBundleRejected, match=r"members\.0\.jurisdiction"):
        verify(resign(doc))


def test_refuses_fingerprint_not_matching_certificate() -> None:
    doc = payload_doc(signed((member("110000"),)))
    doc["members"][0]["tls_fingerprint"] = "ab" * 32
    with pytest.raises(TrustBundleRejected, match=r"110000.*tls_fingerprint.*certificate"):
        verify(resign(doc))


def test_refuses_second_certificate_smuggled_into_a_member() -> None:
    doc = payload_doc(signed((member("110000"),)))
    doc["members"][0]["tls_cert_pem"] += tls("140000").cert_pem.decode()
    with pytest.raises(TrustBundleRejected, match="exactly one PEM CERTIFICATE"):
        verify(resign(doc))


def test_refuses_duplicate_jurisdiction() -> None:
    doc = payload_doc(signed((member("110000"), member("120000"))))
    doc["members"][1]["jurisdiction"] = "110000"
    with pytest.raises(TrustBundleRejected, match="duplicate jurisdiction 110000"):
        verify(resign(doc))
    with pytest.raises(TrustBundleRejected, match="duplicate jurisdiction"):
        signed((member("110000"), member("110000")))


def test_refuses_members_sharing_a_certificate_or_key() -> None:
    m1 = member("110000")
    clone = member("120000", tls_cert_pem=m1.tls_cert_pem, tls_fingerprint=m1.tls_fingerprint)
    with pytest.raises(TrustBundleRejected, match="share the same TLS certificate"):
        signed((m1, clone))
    same_key = member("120000", signing_key=m1.signing_key)
    with pytest.raises(TrustBundleRejected, match="share the same public key"):
        signed((m1, same_key))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("version", True, "version"),
        ("version", 0, "version"),
        ("version", "3", "version"),
        ("issued_at", "2025-01-01", "issued_at"),
        ("expires_at", "2025-13-01T00:00:00Z", "expires_at"),
        ("expires_at", "2024-01-01T00:00:00Z", "expires_at: expected after issued_at"),
        ("federation", "", "federation"),
        ("members", {}, "members"),
    ],
)
def test_refuses_malformed_top_level_fields(field: str, value: object, match: str) -> None:
    doc = payload_doc(signed())
    doc[field] = value
    with pytest.raises(TrustBundleRejected, match=match):
        verify(resign(doc))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("endpoint", "no-port", "endpoint"),
        ("endpoint", "host:70000", "endpoint"),
        ("endpoint", "a b:1", "endpoint"),
        ("signing_key", "AAAA", "Ed25519 public key length"),
        ("seal_key", "!!", "not valid base64"),
        ("datasets", ["Bad-Code"], "dataset code"),
        ("datasets", ["a", "a"], "repeat"),
        ("origin", "has space", "origin"),
    ],
)
def test_refuses_malformed_member_fields(field: str, value: object, match: str) -> None:
    doc = payload_doc(signed((member("110000"),)))
    doc["members"][0][field] = value
    with pytest.raises(TrustBundleRejected, match=match):
        verify(resign(doc))


def test_refuses_too_large_bundle() -> None:
    data = signed((member("110000"),))
    with pytest.raises(TrustBundleRejected, match="too large"):
        verify(data, limits=Limits(max_bundle_bytes=len(data) - 1))


def test_refuses_too_many_members() -> None:
    data = signed((member("110000"), member("120000")))
    with pytest.raises(TrustBundleRejected, match="2 members, limit 1"):
        verify(data, limits=Limits(max_bundle_members=1))


def test_member_refuses_same_key_for_signing_and_ledger() -> None:
    m = member("110000")
    with pytest.raises(InvalidArgument, match="different keys"):
        replace(m, ledger_key=m.signing_key)


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def test_load_bundle_reads_authority_pub_next_to_it(tmp_path: Path) -> None:
    (tmp_path / "bundle.json").write_bytes(signed((member("110000"),)))
    (tmp_path / "authority.pub").write_text(AUTHORITY.verify_key.b64() + "\n")
    assert load_bundle(tmp_path / "bundle.json", now=NOW).version == 3
    key = read_authority_key(tmp_path / "authority.pub")
    assert load_bundle(tmp_path / "bundle.json", key, now=NOW, min_version=3).version == 3
    with pytest.raises(TrustBundleRejected, match="authority"):
        load_bundle(tmp_path / "bundle.json", OTHER_AUTHORITY.verify_key, now=NOW)


def test_load_bundle_refuses_oversized_file_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_bytes(b" " * (Limits().max_bundle_bytes + 10))
    with pytest.raises(TrustBundleRejected, match="too large"):
        load_bundle(path, AUTHORITY.verify_key, now=NOW)


def test_load_bundle_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StorageFailure, match="not found"):
        load_bundle(tmp_path / "nope.json", AUTHORITY.verify_key, now=NOW)


def test_reissue_verification_ignores_expiry_only() -> None:
    data = signed()
    assert verify_bundle_for_reissue(data, AUTHORITY.verify_key).version == 3
    with pytest.raises(TrustBundleRejected):
        verify_bundle_for_reissue(data, OTHER_AUTHORITY.verify_key)


# --------------------------------------------------------------------------
# Configured limits (gateway.limits) and the version-store protocol
# --------------------------------------------------------------------------


def test_refuses_more_signatures_than_the_configured_limit() -> None:
    doc = envelope(signed((member("110000"),)))
    doc["signatures"] = doc["signatures"] * 3  # the valid signature, repeated
    data = json.dumps(doc).encode()
    assert verify(data).version == 3
    with pytest.raises(TrustBundleRejected, match="3 signatures, limit 2"):
        verify(data, limits=Limits(max_bundle_signatures=2))


def test_refuses_member_with_more_datasets_than_the_configured_limit() -> None:
    data = signed((member("110000", ("a", "b", "c")),))
    assert verify(data).member("110000").datasets == ("a", "b", "c")
    with pytest.raises(TrustBundleRejected, match=r"110000.*datasets count: expected <= 2"):
        verify(data, limits=Limits(max_datasets_per_member=2))
    with pytest.raises(TrustBundleRejected, match="datasets count"):
        signed((member("110000", ("a", "b", "c")),), limits=Limits(max_datasets_per_member=2))


def test_refuses_certificate_larger_than_the_configured_limit() -> None:
    data = signed((member("110000"),))
    with pytest.raises(TrustBundleRejected, match="tls_cert_pem: expected at most 100 bytes"):
        verify(data, limits=Limits(max_cert_pem_bytes=100))


def test_configured_clock_skew_decides_whether_a_future_bundle_is_accepted() -> None:
    data = signed(issued_at=NOW + dt.timedelta(seconds=100))
    assert verify(data).version == 3  # within the default 300 s
    with pytest.raises(TrustBundleRejected, match="not yet valid"):
        verify(data, limits=Limits(max_clock_skew_seconds=50))


class _MemoryVersionStore:
    """A second BundleVersionStore: what a PostgreSQL store would implement."""

    def __init__(self) -> None:
        self.version, self.digest = 0, None  # type: tuple[int, str | None]

    def highest(self) -> int:
        return self.version

    def highest_digest(self) -> str | None:
        return self.digest

    def record(self, version: int, digest: str | None = None) -> None:
        self.version, self.digest = version, digest or self.digest


def test_rollback_and_fork_refused_with_any_version_store() -> None:
    store: BundleVersionStore = _MemoryVersionStore()
    accept_bundle(verify(signed(version=4)), store)
    with pytest.raises(TrustBundleRejected, match="older"):
        accept_bundle(verify(signed(version=3)), store)
    with pytest.raises(TrustBundleRejected, match="differs from the version 4"):
        accept_bundle(verify(signed((member("110000"),), version=4)), store)


def test_bundle_verification_is_pure_no_file_or_network_io() -> None:
    """The verifier and the values import nothing that reaches files, sockets or databases."""
    import ast

    import gateway.trust.model
    import gateway.trust.verify

    io_modules = {"os", "io", "pathlib", "socket", "sqlite3", "grpc", "shutil", "tempfile"}
    for module in (gateway.trust.verify, gateway.trust.model):
        assert module.__file__ is not None
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", f"{module.__name__} opens a file"
                continue
            else:
                continue
            assert not names & io_modules, f"{module.__name__} imports {names & io_modules}"
