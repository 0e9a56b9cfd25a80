"""`gateway keygen` and `gateway federation ...` end to end through gateway.cli.main."""

from __future__ import annotations

import base64
import datetime as dt
import json
import stat
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.errors import TrustBundleRejected
from gateway.trust import load_bundle, read_authority_key, verify_bundle

GATEWAYS = {
    "110000": "北京市大数据中心",
    "120000": "天津市大数据管理中心",
    "130000": "河北省大数据中心",
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fed_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    for code, name in GATEWAYS.items():
        rc, out, _ = run(
            capsys,
            "keygen",
            "--jurisdiction",
            code,
            "--name",
            name,
            "--out",
            str(tmp_path / code),
            "--host",
            f"gw-{code}.local",
        )
        assert rc == 0, out
    fed = tmp_path / "fed"
    rc, out, _ = run(
        capsys, "federation", "init", "--out", str(fed), "--name", "京津冀数据共享联盟"
    )
    assert rc == 0
    return fed


def add(capsys: pytest.CaptureFixture[str], fed: Path, code: str, *extra: str) -> tuple[int, str]:
    rc, out, err = run(
        capsys,
        "federation",
        "add-member",
        "--bundle",
        str(fed / "bundle.json"),
        "--authority-key",
        str(fed / "authority.key"),
        "--public",
        str(fed.parent / code / "public.json"),
        "--endpoint",
        f"127.0.0.1:{7000 + int(code[:2])}",
        "--datasets",
        "si_contributions,hf_accounts",
        *extra,
    )
    return rc, out + err


def test_keygen_prints_fingerprints_never_private_material(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "k"
    rc, out, err = run(
        capsys,
        "keygen",
        "--jurisdiction",
        "110000",
        "--name",
        "北京市大数据中心",
        "--out",
        str(out_dir),
    )
    assert rc == 0, err
    public = json.loads((out_dir / "public.json").read_text("utf-8"))
    assert public["signing_key"] in out and public["tls_fingerprint"] in out
    for f in ("signing.key", "ledger.key", "seal.key", "pseudonym.key"):
        secret = (out_dir / f).read_text().strip()
        assert secret not in out + err
        assert stat.S_IMODE((out_dir / f).stat().st_mode) == 0o600
    assert "PRIVATE" not in out + err


def test_keygen_refuses_to_overwrite_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["keygen", "--jurisdiction", "110000", "--name", "gw", "--out", str(tmp_path)]
    assert run(capsys, *args)[0] == 0
    before = (tmp_path / "signing.key").read_bytes()
    rc, _, err = run(capsys, *args)
    assert rc == 2 and "refusing to overwrite" in err
    assert (tmp_path / "signing.key").read_bytes() == before
    assert run(capsys, *args, "--force")[0] == 0
    assert (tmp_path / "signing.key").read_bytes() != before


def test_keygen_rejects_bad_jurisdiction(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run(
        capsys, "keygen", "--jurisdiction", "11", "--name", "gw", "--out", str(tmp_path / "k")
    )
    assert rc == 2 and "jurisdiction code" in err


def test_init_add_three_remove_one_show(fed_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fed = fed_dir
    assert stat.S_IMODE((fed / "authority.key").stat().st_mode) == 0o600
    authority = read_authority_key(fed / "authority.pub")
    b1 = load_bundle(fed / "bundle.json", authority)
    assert (b1.version, b1.members) == (1, ())

    for code in GATEWAYS:
        rc, out = add(capsys, fed, code)
        assert rc == 0, out
    b4 = load_bundle(fed / "bundle.json", authority)
    assert b4.version == 4
    assert b4.jurisdictions() == ("110000", "120000", "130000")
    tj = b4.member("120000")
    assert tj.name == "天津市大数据管理中心"
    assert tj.endpoint == "127.0.0.1:7012"
    assert tj.datasets == ("si_contributions", "hf_accounts")
    public = json.loads((fed.parent / "120000" / "public.json").read_text("utf-8"))
    assert tj.signing_key.b64() == public["signing_key"]
    assert tj.tls_fingerprint == public["tls_fingerprint"]

    rc, out, err = run(
        capsys,
        "federation",
        "remove-member",
        "--bundle",
        str(fed / "bundle.json"),
        "--authority-key",
        str(fed / "authority.key"),
        "--jurisdiction",
        "120000",
    )
    assert rc == 0, err
    b5 = load_bundle(fed / "bundle.json", authority, min_version=4)
    assert b5.version == 5 and b5.jurisdictions() == ("110000", "130000")

    rc, out, err = run(
        capsys,
        "federation",
        "show",
        "--bundle",
        str(fed / "bundle.json"),
        "--authority",
        str(fed / "authority.pub"),
    )
    assert rc == 0, err
    assert "京津冀数据共享联盟" in out
    assert "version     5" in out
    assert "110000 北京市大数据中心" in out and "130000 河北省大数据中心" in out
    assert "120000" not in out
    assert b5.expires_at.isoformat() in out


def test_add_duplicate_jurisdiction_refused_unless_replace(
    fed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(capsys, fed_dir, "110000")[0] == 0
    rc, out = add(capsys, fed_dir, "110000")
    assert rc == 2 and "already a member" in out
    assert load_bundle(fed_dir / "bundle.json").version == 2  # unchanged
    rc, out = add(capsys, fed_dir, "110000", "--replace", "--origin", "bj.example/ledger")
    assert rc == 0, out
    b = load_bundle(fed_dir / "bundle.json")
    assert b.version == 3 and b.member("110000").origin == "bj.example/ledger"


def test_remove_unknown_member_refused(fed_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(
        capsys,
        "federation",
        "remove-member",
        "--bundle",
        str(fed_dir / "bundle.json"),
        "--authority-key",
        str(fed_dir / "authority.key"),
        "--jurisdiction",
        "120000",
    )
    assert rc == 2 and "not a member" in err


def test_edit_refuses_a_tampered_bundle(fed_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add(capsys, fed_dir, "110000")
    path = fed_dir / "bundle.json"
    env = json.loads(path.read_bytes())
    payload = json.loads(base64.b64decode(env["payload"]))
    payload["members"][0]["endpoint"] = "evil.example:443"
    env["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    path.write_text(json.dumps(env))
    rc, out = add(capsys, fed_dir, "120000")
    assert rc == 2 and "signature does not verify" in out
    rc, _, err = run(capsys, "federation", "show", "--bundle", str(path))
    assert rc == 2 and "signature does not verify" in err


def test_edit_with_wrong_authority_key_refused(
    tmp_path: Path, fed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    assert run(capsys, "federation", "init", "--out", str(other), "--name", "别的联盟")[0] == 0
    rc, _, err = run(
        capsys,
        "federation",
        "remove-member",
        "--bundle",
        str(fed_dir / "bundle.json"),
        "--authority-key",
        str(other / "authority.key"),
        "--jurisdiction",
        "110000",
    )
    assert rc == 2 and "not signed by this federation's authority" in err
    rc, _, err = run(
        capsys,
        "federation",
        "show",
        "--bundle",
        str(fed_dir / "bundle.json"),
        "--authority",
        str(other / "authority.pub"),
    )
    assert rc == 2 and "not signed by this federation's authority" in err


def test_init_refuses_to_overwrite(fed_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "federation", "init", "--out", str(fed_dir), "--name", "x")
    assert rc == 2 and "refusing to overwrite" in err


def test_renew_extends_expiry_with_new_version(
    fed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add(capsys, fed_dir, "110000")
    before = load_bundle(fed_dir / "bundle.json")
    rc, _, err = run(
        capsys,
        "federation",
        "renew",
        "--bundle",
        str(fed_dir / "bundle.json"),
        "--authority-key",
        str(fed_dir / "authority.key"),
        "--validity-days",
        "30",
    )
    assert rc == 0, err
    after = load_bundle(fed_dir / "bundle.json")
    assert after.version == before.version + 1
    assert after.members == before.members
    assert after.expires_at < before.expires_at


def test_short_validity_bundle_expires(fed_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = add(capsys, fed_dir, "110000", "--validity-days", "1")
    assert rc == 0
    data = (fed_dir / "bundle.json").read_bytes()
    key = read_authority_key(fed_dir / "authority.pub")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    with pytest.raises(TrustBundleRejected, match="expired"):
        verify_bundle(data, key, later)


def test_add_member_rejects_bad_endpoint_and_dataset(
    fed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "federation",
        "add-member",
        "--bundle",
        str(fed_dir / "bundle.json"),
        "--authority-key",
        str(fed_dir / "authority.key"),
        "--public",
        str(fed_dir.parent / "110000"),
    ]
    rc, _, err = run(capsys, *base, "--endpoint", "nohost", "--datasets", "a")
    assert rc == 2 and "endpoint" in err
    rc, _, err = run(capsys, *base, "--endpoint", "h:1", "--datasets", "Bad-Code")
    assert rc == 2 and "dataset code" in err
    assert load_bundle(fed_dir / "bundle.json").version == 1


def test_show_of_a_missing_bundle_names_the_bundle_not_authority_pub(
    tmp_path: Path, fed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --bundle used to be reported as "/authority.pub: authority public key
    not found" (the folder it would sit in has none); offline tools that read
    authority.pub next to the bundle said the same."""
    missing = tmp_path / "nowhere" / "bundle.json"
    rc, _, err = run(capsys, "federation", "show", "--bundle", str(missing))
    assert rc == 2 and f"{missing}: trust bundle not found" in err, err
    assert "authority" not in err and len(err.splitlines()) == 1
    ledger = tmp_path / "ledger.sqlite"
    ledger.write_bytes(b"")
    rc, _, err = run(capsys, "audit", "report", str(ledger), "--bundle", str(missing),
                     "-o", str(tmp_path / "r.html"))  # fmt: skip
    assert rc == 2 and f"{missing}: trust bundle not found" in err, err
    # A bundle that is there, with no authority.pub beside it: that is what is named.
    (fed_dir / "authority.pub").unlink()
    rc, _, err = run(capsys, "federation", "show", "--bundle", str(fed_dir / "bundle.json"))
    assert rc == 2 and f"{fed_dir / 'authority.pub'}: authority public key not found" in err
