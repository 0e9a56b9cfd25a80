"""Keys with validity intervals in the trust bundle, and verifiers picking the
key valid at each signature's time.

Mutation tests re-sign what they mutate (the authority signs a bundle listing
the wrong key or the wrong interval): the failure comes from the key choice,
not from a broken signature.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
from pathlib import Path

import pytest

from gateway.crypto import SigningKey, unb64
from gateway.domains import TRUST_BUNDLE
from gateway.errors import InvalidArgument, TrustBundleRejected
from gateway.identity import (
    generate_keys,
    load_public_descriptor,
    load_retired_seal_keys,
    rotate_keys,
)
from gateway.keyring import KeyRing, RetiredKey
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.verify import verify_store
from gateway.limits import Limits
from gateway.trust import canonical_json, rotated_member, verify_bundle
from tests.ledger.ledger_testkit import make_event
from tests.test_trust import AUTHORITY, NOW, member, signed

OLD = SigningKey(bytes([7]) * 32)
NEW = SigningKey(bytes([8]) * 32)
T0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
ROTATED = dt.datetime(2025, 5, 1, tzinfo=dt.UTC)


def test_bundle_without_rotations_keeps_its_bytes() -> None:
    payload = json.loads(unb64(json.loads(signed((member("110000"),)))["payload"]))
    assert set(payload["members"][0]) == {
        "jurisdiction", "name", "endpoint", "signing_key", "ledger_key", "seal_key",
        "tls_cert_pem", "tls_fingerprint", "datasets", "origin",
    }  # fmt: skip


def test_retired_keys_and_witness_key_survive_signing_and_strict_parsing() -> None:
    m = member(
        "110000",
        ledger_key=NEW.verify_key,
        witness_key=SigningKey(bytes([9]) * 32).verify_key,
        retired=(RetiredKey("ledger", OLD.verify_key.b64(), ROTATED),),
    )
    bundle = verify_bundle(signed((m,)), AUTHORITY.verify_key, NOW)
    got = bundle.member("110000")
    assert got.retired == m.retired and got.witness_key == m.witness_key
    assert bundle.keys_valid_at("110000", "ledger", T0) == (NEW.verify_key, OLD.verify_key)
    assert bundle.keys_valid_at("110000", "ledger", NOW) == (NEW.verify_key,)
    assert bundle.keys_valid_at("110000", "ledger", None) == (NEW.verify_key, OLD.verify_key)


def test_witness_key_equal_to_the_ledger_key_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="witness_key must differ"):
        member("110000", witness_key=member("110000").ledger_key)


def test_unbounded_or_malformed_retired_keys_are_refused() -> None:
    many = tuple(RetiredKey("ledger", OLD.verify_key.b64(), ROTATED) for _ in range(3))
    with pytest.raises(TrustBundleRejected, match="retired_keys"):
        signed((member("110000", retired=many),), limits=Limits(max_retired_keys=2))
    with pytest.raises(InvalidArgument, match="not_before must be before"):
        member("110000", retired=(RetiredKey("ledger", OLD.verify_key.b64(), T0, ROTATED),))
    with pytest.raises(InvalidArgument, match="length"):
        member("110000", retired=(RetiredKey("envelope", "AAAA", ROTATED),))
    with pytest.raises(InvalidArgument, match="PEM"):
        member("110000", retired=(RetiredKey("tls", "not a cert", ROTATED),))


def test_retired_key_of_an_unknown_kind_in_a_signed_bundle_is_refused() -> None:
    doc = json.loads(signed((member("110000"),)))
    payload = json.loads(unb64(doc["payload"]))
    payload["members"][0]["retired_keys"] = [
        {"kind": "authority", "key": OLD.verify_key.b64(), "not_after": "2025-05-01T00:00:00Z"}
    ]
    raw = canonical_json(payload)
    doc["payload"] = base64.b64encode(raw).decode()
    doc["signatures"][0]["sig"] = base64.b64encode(AUTHORITY.sign(TRUST_BUNDLE, raw)).decode()
    with pytest.raises(TrustBundleRejected, match="kind"):
        verify_bundle(json.dumps(doc).encode(), AUTHORITY.verify_key, NOW)


def test_rotated_member_retires_exactly_the_changed_keys_until_the_overlap_ends(
    tmp_path: Path,
) -> None:
    from gateway.trust import Member

    keys = generate_keys(tmp_path / "k", "110000", "北京", now=T0)
    current = Member.from_descriptor(load_public_descriptor(tmp_path / "k"), "gw:7101", ())
    rotate_keys(tmp_path / "k", ["ledger", "tls"], now=ROTATED)
    new_desc = load_public_descriptor(tmp_path / "k")
    rotated, kinds = rotated_member(current, new_desc, ROTATED, dt.timedelta(hours=24))
    assert kinds == ("ledger", "tls")
    assert rotated.signing_key == current.signing_key  # untouched
    assert rotated.ledger_key != current.ledger_key
    ring = rotated.ring("ledger")
    assert ring.contains(keys.ledger.verify_key, ROTATED + dt.timedelta(hours=23))
    assert not ring.contains(keys.ledger.verify_key, ROTATED + dt.timedelta(hours=25))
    assert ring.contains(keys.ledger.verify_key)  # for what it signed before: always
    during = rotated.tls_certs_at(ROTATED + dt.timedelta(hours=1))
    after = rotated.tls_certs_at(ROTATED + dt.timedelta(hours=25))
    assert len(during) == 2 and len(after) == 1
    assert list((tmp_path / "k").glob("ledger.key.retired-*"))
    with pytest.raises(InvalidArgument, match="no key differs"):
        rotated_member(rotated, new_desc, ROTATED, dt.timedelta(hours=1))


def test_rotating_keys_keeps_the_members_replica_endpoints(tmp_path: Path) -> None:
    from gateway.trust import Member

    generate_keys(tmp_path / "k", "110000", "北京", now=T0)
    current = Member.from_descriptor(
        load_public_descriptor(tmp_path / "k"), "gw-a:7101", ("si",),
        endpoints=("gw-a:7101", "gw-b:7101"),
    )  # fmt: skip
    rotate_keys(tmp_path / "k", ["envelope"], now=ROTATED)
    rotated, _ = rotated_member(
        current, load_public_descriptor(tmp_path / "k"), ROTATED, dt.timedelta(hours=24)
    )
    assert rotated.endpoints == ("gw-a:7101", "gw-b:7101")
    assert rotated.datasets == ("si",) and rotated.origin == current.origin


def test_rotating_the_same_key_twice_in_one_second_keeps_every_retired_private_key(
    tmp_path: Path,
) -> None:
    from gateway.identity import load_keys

    first = generate_keys(tmp_path, "110000", "北京", now=T0).seal.public_key
    second = rotate_keys(tmp_path, ["sealing"], now=ROTATED).seal.public_key
    third = rotate_keys(tmp_path, ["sealing"], now=ROTATED).seal.public_key
    assert load_keys(tmp_path).seal.public_key == third
    retired = {k.public_key for k in load_retired_seal_keys(tmp_path)}
    # Neither earlier key was overwritten by the later rotation's backup.
    assert retired == {first, second}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tmp_path.glob("*.retired-*"))


def _ledger_signed_by(path: Path, key: SigningKey, at_ms: int) -> SqliteLedger:
    ledger = SqliteLedger(
        path, key, "110000.gateway.dataexchange.cn/ledger", clock=lambda: at_ms / 1000
    )
    ledger.append_many([make_event(i) for i in range(3)])
    ledger.checkpoint_now()
    return ledger


def test_old_checkpoints_verify_with_the_key_valid_when_they_were_issued(tmp_path: Path) -> None:
    t0_ms = int(T0.timestamp() * 1000)
    ledger = _ledger_signed_by(tmp_path / "l.sqlite", OLD, t0_ms)
    origin = ledger.origin
    good = KeyRing("ledger", NEW.verify_key, ((OLD.verify_key, None, ROTATED),))
    assert verify_store(ledger.store, origin, good).problem is None
    # The authority listed the old key, but retired before the checkpoint was issued.
    early = KeyRing("ledger", NEW.verify_key, ((OLD.verify_key, None, T0 - dt.timedelta(days=1)),))
    report = verify_store(ledger.store, origin, early)
    assert report.problem is not None and report.problem.kind == "checkpoint-signature"
    # The authority listed a different key as the old one.
    other = SigningKey(bytes([5]) * 32).verify_key
    wrong = KeyRing("ledger", NEW.verify_key, ((other, None, ROTATED),))
    report = verify_store(ledger.store, origin, wrong)
    assert report.problem is not None and report.problem.kind == "checkpoint-signature"
    # No history at all: what a bundle made by `add-member --replace` gives.
    report = verify_store(ledger.store, origin, KeyRing.single("ledger", NEW.verify_key))
    assert report.problem is not None
    ledger.close()


class _Crash(BaseException):
    """The process killed at this point: no handler of the code under test runs."""


def _files(key_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(key_dir.iterdir())}


@pytest.mark.parametrize("fails", ["write of the new tls.key", "rename of the new tls.crt"])
def test_key_rotation_failing_midway_leaves_the_old_complete_key_set_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    """A full disk or an I/O error on one file of a rotation must not leave a key
    folder with the old keys renamed away and the new ones half written: the
    gateway would not start (or start with a key that matches nothing)."""
    import errno
    import os

    from gateway import identity
    from gateway.errors import StorageFailure
    from gateway.identity import ROTATABLE, load_keys

    key_dir = tmp_path / "k"
    old = generate_keys(key_dir, "110000", "北京", now=T0)
    before = _files(key_dir)
    real_write, real_replace = identity.write_file_atomic, os.replace

    def write(path: Path, data: bytes, mode: int) -> None:
        if "tls.key" in path.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data, mode)

    def replace(src: object, dst: object) -> None:
        if Path(str(dst)).name == "tls.crt":
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)  # type: ignore[arg-type]

    if fails.startswith("write"):
        monkeypatch.setattr(identity, "write_file_atomic", write)
    else:
        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StorageFailure) as info:
        rotate_keys(key_dir, list(ROTATABLE), now=ROTATED)
    monkeypatch.undo()
    # The old set, complete and matching its public.json, and nothing left behind.
    assert load_keys(key_dir).public_descriptor() == old.public_descriptor()
    assert _files(key_dir) == before
    assert "old keys" in info.value.message and "in use" in info.value.message
    # A rerun rotates.
    new = rotate_keys(key_dir, list(ROTATABLE), now=ROTATED)
    assert new.signing.verify_key != old.signing.verify_key
    assert [k.public_key for k in load_retired_seal_keys(key_dir)] == [old.seal.public_key]


def test_key_rotation_killed_midway_is_refused_until_a_rerun_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed after some new files are in place: the gateway must not start on the
    mixed set (its message says what to do) and `keygen --rotate` run again
    completes the rotation, keeping every old private key as retired."""
    import os

    from gateway.cli import main
    from gateway.errors import ConfigurationError
    from gateway.identity import load_keys

    key_dir = tmp_path / "k"
    old = generate_keys(key_dir, "110000", "北京", now=T0)
    before = _files(key_dir)
    real_replace = os.replace

    def replace(src: object, dst: object) -> None:
        if Path(str(dst)).name == "tls.key":
            raise _Crash()
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(_Crash):
        main(["keygen", "--rotate", "all", "--out", str(key_dir)])
    monkeypatch.undo()
    with pytest.raises(ConfigurationError, match=r"interrupted there .* keygen --rotate"):
        load_keys(key_dir)
    capsys.readouterr()
    assert main(["keygen", "--rotate", "all", "--out", str(key_dir)]) == 0
    assert "finished the interrupted rotation of envelope, ledger" in capsys.readouterr().out
    new = load_keys(key_dir)
    for kind in ("signing", "ledger", "witness"):
        assert getattr(new, kind).verify_key != getattr(old, kind).verify_key, kind
    assert new.seal.public_key != old.seal.public_key
    assert new.tls.cert_pem != old.tls.cert_pem
    # Every old file kept under one retired suffix, byte for byte; no leftovers.
    after = _files(key_dir)
    for name in ("signing.key", "ledger.key", "witness.key", "seal.key", "tls.key", "tls.crt"):
        (retired,) = [n for n in after if n.startswith(f"{name}.retired-")]
        assert after[retired] == before[name], name
    assert not [n for n in after if n.startswith(".")]
    # And then an ordinary rotation works again.
    assert main(["keygen", "--rotate", "sealing", "--out", str(key_dir)]) == 0
    assert "rotated sealing" in capsys.readouterr().out
