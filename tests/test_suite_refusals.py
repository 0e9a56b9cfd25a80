"""A federation has one cipher suite: keys, bundles and messages of the other are refused.

Each refusal names both suites, so an operator who mixed up `--suite` knows
what to fix. Covers the authority's tools (init, add-member), bundle
verification, key loading and sealed payloads.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest

from gateway import crypto
from gateway.cli import main
from gateway.errors import (
    ConfigurationError,
    CryptoFailure,
    SuiteMismatch,
    TrustBundleRejected,
)
from gateway.identity import generate_keys, load_keys, load_public_descriptor
from gateway.trust import (
    Member,
    load_bundle,
    read_authority_key,
    read_authority_signing_key,
    sign_bundle,
    verify_bundle,
)

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def _init(tmp: Path, suite: str, capsys: pytest.CaptureFixture[str]) -> Path:
    fed = tmp / f"fed-{suite}"
    assert (
        main(["federation", "init", "--out", str(fed), "--name", "京津冀", "--suite", suite]) == 0
    )
    capsys.readouterr()
    return fed


def _member(key_dir: Path) -> Member:
    desc = load_public_descriptor(key_dir)
    return Member.from_descriptor(desc, "127.0.0.1:7001", ("si_contributions",))


@pytest.mark.parametrize("suite", ["intl", "gm"])
def test_federation_init_names_its_suite_in_the_signed_bundle(
    tmp_path: Path, suite: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fed = _init(tmp_path, suite, capsys)
    bundle = load_bundle(fed / "bundle.json")
    assert bundle.suite == suite
    assert read_authority_key(fed / "authority.pub").suite == suite
    assert read_authority_signing_key(fed / "authority.key").suite == suite
    doc = json.loads(crypto.unb64(json.loads((fed / "bundle.json").read_text())["payload"]))
    assert doc["suite"] == suite
    assert main(["federation", "show", "--bundle", str(fed / "bundle.json")]) == 0
    assert f"suite       {suite}" in capsys.readouterr().out


def test_gm_keys_are_refused_by_an_intl_federation_and_vice_versa(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for fed_suite, key_suite in (("intl", "gm"), ("gm", "intl")):
        fed = _init(tmp_path, fed_suite, capsys)
        keys = tmp_path / f"keys-{key_suite}"
        if not keys.exists():
            generate_keys(keys, "110000", "北京", suite=key_suite)
        rc = main([
            "federation", "add-member", "--bundle", str(fed / "bundle.json"),
            "--authority-key", str(fed / "authority.key"), "--public", str(keys),
            "--endpoint", "127.0.0.1:7001",
        ])  # fmt: skip
        err = capsys.readouterr().err
        assert rc != 0
        assert f"suite {key_suite}" in err and f"uses suite {fed_suite}" in err
        assert load_bundle(fed / "bundle.json").members == ()  # nothing written


def test_bundle_of_the_other_suite_is_refused_with_both_suites_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intl, gm = _init(tmp_path, "intl", capsys), _init(tmp_path, "gm", capsys)
    gm_data = (gm / "bundle.json").read_bytes()
    with pytest.raises(TrustBundleRejected, match=r"suite gm bundle.*authority key is suite intl"):
        verify_bundle(gm_data, read_authority_key(intl / "authority.pub"), dt.datetime.now(dt.UTC))


def test_signing_a_bundle_with_a_member_of_the_other_suite_is_refused(tmp_path: Path) -> None:
    generate_keys(tmp_path / "k", "110000", "北京", suite="intl")
    with pytest.raises(SuiteMismatch, match=r"suite intl.*suite gm"):
        sign_bundle(
            "f", 1, NOW, NOW + dt.timedelta(days=1), [_member(tmp_path / "k")],
            crypto.GM.generate_signing_key(),
        )  # fmt: skip


def test_bundle_listing_a_key_of_the_other_suite_is_refused(tmp_path: Path) -> None:
    """An edited payload with an intl key in a gm bundle never becomes a member."""
    generate_keys(tmp_path / "k", "110000", "北京", suite="gm")
    authority = crypto.GM.generate_signing_key()
    data = json.loads(
        sign_bundle("f", 1, NOW, NOW + dt.timedelta(days=1), [_member(tmp_path / "k")], authority)
    )
    payload = json.loads(crypto.unb64(data["payload"]))
    payload["members"][0]["seal_key"] = crypto.SealPrivateKey.generate().public_key.encode()
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    data["payload"] = crypto.b64(raw)
    data["signatures"][0]["sig"] = crypto.b64(
        authority.sign("cn.dataexchange.gateway.v1.TrustBundle", raw)
    )
    with pytest.raises(TrustBundleRejected, match=r"seal_key.*suite intl.*suite gm"):
        verify_bundle(json.dumps(data).encode(), authority.verify_key, NOW)


def test_key_directory_mixing_suites_is_refused(tmp_path: Path) -> None:
    generate_keys(tmp_path / "gm", "110000", "北京", suite="gm")
    generate_keys(tmp_path / "intl", "110000", "北京", suite="intl")
    shutil.copy(tmp_path / "intl" / "seal.key", tmp_path / "gm" / "seal.key")
    # The gateway's own keys are its operator's configuration: a ConfigurationError.
    with pytest.raises(ConfigurationError, match=r"seal.key.*suite intl.*suite gm"):
        load_keys(tmp_path / "gm")


def test_gm_key_directory_round_trips(tmp_path: Path) -> None:
    made = generate_keys(tmp_path / "gm", "110000", "北京", suite="gm")
    loaded = load_keys(tmp_path / "gm")
    assert loaded.suite.name == "gm"
    assert loaded.signing.verify_key == made.signing.verify_key
    assert loaded.seal.public_key == made.seal.public_key
    assert (tmp_path / "gm" / "signing.key").read_text().startswith("sm2:")
    with pytest.raises(ConfigurationError, match=r"ledger\.key"):  # a truncated key file
        (tmp_path / "gm" / "ledger.key").write_text("sm2:AAAA\n")
        load_keys(tmp_path / "gm")


@pytest.mark.parametrize(("sealer", "opener"), [("intl", "gm"), ("gm", "intl")])
def test_payload_sealed_by_the_other_suite_is_refused_as_a_suite_mismatch(
    sealer: str, opener: str
) -> None:
    to = crypto.suite(opener).generate_seal_key(os.urandom)
    other = crypto.suite(sealer).generate_seal_key(os.urandom)
    blob = crypto.seal(other.public_key, "dom", b"x", b"ad")
    with pytest.raises(SuiteMismatch, match=rf"suite {sealer}.*suite {opener}"):
        crypto.open_sealed(to, "dom", blob, b"ad")
    with pytest.raises(CryptoFailure):  # an unknown version byte stays opaque
        crypto.open_sealed(to, "dom", b"\x7f" + blob[1:], b"ad")


def test_envelope_signed_with_the_other_suites_key_is_refused_as_a_suite_mismatch(
    tmp_path: Path,
) -> None:
    from gateway.envelope import open_envelope, sign_envelope
    from gateway.trust import TrustBundle

    generate_keys(tmp_path / "gm", "110000", "北京", suite="gm")
    bundle = TrustBundle(
        "f", 1, NOW, NOW + dt.timedelta(days=1), (_member(tmp_path / "gm"),), "0" * 64, "gm"
    )
    intl_key = crypto.INTL.generate_signing_key(os.urandom)
    env = sign_envelope(intl_key, "110000", "cn.dataexchange.gateway.v1.PeerRecordRequest", b"x")
    with pytest.raises(SuiteMismatch, match=r"envelope signature.*suite intl.*suite gm"):
        open_envelope(env, "cn.dataexchange.gateway.v1.PeerRecordRequest", bundle, None, 1 << 20)
    gm_key = load_keys(tmp_path / "gm").signing
    good = sign_envelope(gm_key, "110000", "cn.dataexchange.gateway.v1.PeerRecordRequest", b"x")
    assert open_envelope(
        good, "cn.dataexchange.gateway.v1.PeerRecordRequest", bundle, None, 1 << 20
    )
    forged = sign_envelope(
        crypto.GM.generate_signing_key(os.urandom), "110000",
        "cn.dataexchange.gateway.v1.PeerRecordRequest", b"x",
    )  # fmt: skip
    with pytest.raises(CryptoFailure):  # same suite, wrong key: opaque as ever
        open_envelope(forged, "cn.dataexchange.gateway.v1.PeerRecordRequest", bundle, None, 1 << 20)


def test_sm2_user_id_is_refused_in_an_intl_bundle_and_kept_across_reissue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fed = tmp_path / "fed"
    assert (
        main(["federation", "init", "--out", str(fed), "--name", "f", "--sm2-user-id", "x@y"]) != 0
    )
    assert "sm2_user_id in a bundle of suite intl" in capsys.readouterr().err
    assert main([
        "federation", "init", "--out", str(fed), "--name", "f", "--suite", "gm",
        "--sm2-user-id", "bureau@jjj.gov.cn",
    ]) == 0  # fmt: skip
    generate_keys(tmp_path / "k", "110000", "北京", suite="gm")
    assert main([
        "federation", "add-member", "--bundle", str(fed / "bundle.json"),
        "--authority-key", str(fed / "authority.key"), "--public", str(tmp_path / "k"),
        "--endpoint", "127.0.0.1:7001",
    ]) == 0  # fmt: skip
    bundle = load_bundle(fed / "bundle.json")
    assert bundle.version == 2 and bundle.sm2_user_id == "bureau@jjj.gov.cn"
    assert bundle.members[0].signing_key.user_id == b"bureau@jjj.gov.cn"  # type: ignore[attr-defined]
    capsys.readouterr()
    assert main(["federation", "show", "--bundle", str(fed / "bundle.json")]) == 0
    assert "SM2 user id bureau@jjj.gov.cn" in capsys.readouterr().out
