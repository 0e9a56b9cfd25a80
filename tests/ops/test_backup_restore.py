"""`gateway backup` / `gateway restore` and the start-up check, against real gateways.

A backup taken while exchanges and statistics run must restore to a ledger
that verifies against the trust bundle, and no restore (nor a budget file
copied back by hand) may reopen privacy budget or quota the ledger shows as
already spent.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.errors import GatewayError, VerificationFailed
from gateway.limits import DEFAULT_LIMITS
from gateway.server.app import Gateway
from gateway.subject.audit import check_store
from tests.conftest import RunningFederation, start_federation, stop_federation

BJ = "110000"


@pytest.fixture()
def fed(tmp_path: Path):  # type: ignore[no-untyped-def]
    rf = start_federation(tmp_path / "fed", rows=150)
    yield rf
    stop_federation(rf)


def _stat(rf: RunningFederation, epsilon: float = 0.25) -> None:
    with rf.client("120000", "tianjin-planning") as c:
        c.query_statistics([BJ], "si_contributions", "commuter_planning", "count", epsilon=epsilon)


def _exchange(rf: RunningFederation) -> None:
    with rf.client("130000", "hebei-housing-fund") as c:
        c.get_records(
            holder_jurisdiction=BJ,
            dataset="si_contributions",
            purpose="housing_fund_transfer",
            subject_ids=[rf.commuter()],
        )


def _deliver_receipts(rf: RunningFederation) -> None:
    """Requesters acknowledge answers off the request path, so BJ ledgers their receipts
    some time after each exchange: stop the background senders (finishing any batch
    in flight) and send what is queued now, so the backup holds every receipt."""
    for code, gw in rf.gateways.items():
        if code != BJ:
            gw.receipts.stop(flush=True)


def _backup(rf: RunningFederation, out: Path) -> None:
    _deliver_receipts(rf)
    assert main(["backup", "--config", str(rf.site(BJ).config), "--out", str(out)]) == 0


def _stop_bj(rf: RunningFederation) -> None:
    rf.gateways[BJ].stop(grace=0.2)


def _remanifest(folder: Path) -> None:
    """What an operator mixing files by hand would end with: digests that match."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_backup_under_load_restores_to_a_verifying_ledger_without_reopening_spent_budget(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def load(fn: object) -> None:
        while not stop.is_set():
            try:
                fn(fed)  # type: ignore[operator]
            except Exception as exc:  # budget runs out: that is fine, keep going
                if "RESOURCE_EXHAUSTED" not in repr(exc):
                    errors.append(exc)

    workers = [threading.Thread(target=load, args=(f,)) for f in (_exchange, _exchange, _stat)]
    for w in workers:
        w.start()
    try:
        while fed.gateways[BJ].ledger.size < 8:
            threading.Event().wait(0.05)
        _backup(fed, tmp_path / "b1")
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert not errors, errors
    bundle = fed.fed.bundle
    _stop_bj(fed)
    # Disaster: the data folder's stores are lost. Restore the backup.
    data = fed.site(BJ).root / "data"
    for name in ("ledger.sqlite", "budget.sqlite", "quota.sqlite", "subject_index.sqlite"):
        for f in data.glob(name + "*"):
            f.unlink()
    capsys.readouterr()
    assert (
        main(["restore", "--config", str(fed.site(BJ).config), "--from", str(tmp_path / "b1")]) == 0
    )
    assert "verified against the trust bundle" in capsys.readouterr().out
    assert main(["ledger", "verify", str(data / "ledger.sqlite"), "--bundle", str(bundle)]) == 0
    # The restored stores cover everything the restored ledger shows as spent,
    # so the gateway starts (its start-up check passes).
    gw = Gateway(load_config(fed.site(BJ).config))
    try:
        assert gw.ledger.size >= 8
        # The subject index came back with the ledger: a row for every indexed
        # entry, none for an entry the restored ledger lacks (exchanges that ran
        # after the ledger was copied are unlinked rows, shown to nobody).
        report = check_store(gw.ledger, gw.stores.subject, DEFAULT_LIMITS)
        assert report.entries_checked >= 1 and report.problems == (), report.problems
    finally:
        gw.stop(grace=0.1)
    fed.gateways.pop(BJ)


def test_restore_refuses_a_budget_older_than_the_ledger_it_comes_with(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _stat(fed)
    _backup(fed, tmp_path / "old")
    _stat(fed)
    _stat(fed)
    _backup(fed, tmp_path / "new")
    _stop_bj(fed)
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "new", mixed)
    shutil.copy2(tmp_path / "old" / "budget.sqlite", mixed / "budget.sqlite")
    _remanifest(mixed)
    before = (fed.site(BJ).root / "data" / "budget.sqlite").read_bytes()
    capsys.readouterr()
    assert main(["restore", "--config", str(fed.site(BJ).config), "--from", str(mixed)]) == 1
    err = capsys.readouterr().err
    assert "privacy budget or quota would be reopened" in err
    assert "budget store: dataset si_contributions, requester 120000/tianjin-planning" in err
    assert "2 more release(s) (epsilon 0.5)" in err
    # Nothing was changed.
    assert (fed.site(BJ).root / "data" / "budget.sqlite").read_bytes() == before
    fed.gateways.pop(BJ)


def test_restore_refuses_an_old_backup_over_a_newer_ledger_which_would_roll_it_back(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _backup(fed, tmp_path / "old")
    _exchange(fed)
    _stop_bj(fed)
    assert (
        main(["restore", "--config", str(fed.site(BJ).config), "--from", str(tmp_path / "old")])
        == 1
    )
    assert "would roll the ledger back" in capsys.readouterr().err
    fed.gateways.pop(BJ)


def test_gateway_refuses_to_start_with_a_budget_file_copied_back_by_hand(
    fed: RunningFederation, tmp_path: Path
) -> None:
    _backup(fed, tmp_path / "old")
    _stat(fed)
    _stop_bj(fed)
    data = fed.site(BJ).root / "data"
    for f in data.glob("budget.sqlite*"):
        f.unlink()
    shutil.copy2(tmp_path / "old" / "budget.sqlite", data / "budget.sqlite")
    with pytest.raises(VerificationFailed, match="refuses to start: privacy budget"):
        Gateway(load_config(fed.site(BJ).config))
    fed.gateways.pop(BJ)


def test_gateway_refuses_to_start_with_an_old_quota_file_that_forgets_todays_releases(
    fed: RunningFederation, tmp_path: Path
) -> None:
    _backup(fed, tmp_path / "old")
    _exchange(fed)
    _stop_bj(fed)
    data = fed.site(BJ).root / "data"
    for f in data.glob("quota.sqlite*"):
        f.unlink()
    shutil.copy2(tmp_path / "old" / "quota.sqlite", data / "quota.sqlite")
    with pytest.raises(VerificationFailed, match="quota store: dataset si_contributions"):
        Gateway(load_config(fed.site(BJ).config))
    fed.gateways.pop(BJ)


def test_restore_refuses_a_backup_whose_ledger_was_altered_even_with_a_matching_manifest(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    _exchange(fed)
    _backup(fed, tmp_path / "b")
    _stop_bj(fed)
    for f in (fed.site(BJ).root / "data").glob("ledger.sqlite*"):
        f.unlink()
    with sqlite3.connect(tmp_path / "b" / "ledger.sqlite") as c:
        (entry,) = c.execute("SELECT entry FROM ledger_entries WHERE idx = 0").fetchone()
        flipped = entry[:-1] + bytes([entry[-1] ^ 1])
        c.execute("UPDATE ledger_entries SET entry = ? WHERE idx = 0", (flipped,))
    assert (
        main(["restore", "--config", str(fed.site(BJ).config), "--from", str(tmp_path / "b")]) == 1
    )
    assert "does not match its manifest digest" in capsys.readouterr().err
    _remanifest(tmp_path / "b")
    assert (
        main(["restore", "--config", str(fed.site(BJ).config), "--from", str(tmp_path / "b")]) == 1
    )
    assert "verification FAILED" in capsys.readouterr().err
    fed.gateways.pop(BJ)


def test_backup_and_restore_of_a_gateway_on_postgresql_point_to_pg_dump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its state is not in data_dir: copying SQLite files there would back up nothing."""
    from gateway.demo.setup import build_federation, use_storage

    fed = build_federation(tmp_path, rows=20)
    config = fed.sites[BJ].config
    use_storage(config, "postgresql://gw@127.0.0.1:1/gateway", "gw_110000")
    for argv in (["backup", "--out", str(tmp_path / "b")], ["restore", "--from", str(tmp_path)]):
        assert main([*argv, "--config", str(config)]) == 2
        assert "pg_dump" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_restore_refuses_while_the_gateway_runs(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _backup(fed, tmp_path / "b")
    assert (
        main(["restore", "--config", str(fed.site(BJ).config), "--from", str(tmp_path / "b")]) == 2
    )
    assert "is running" in capsys.readouterr().err


def test_start_up_cover_is_not_trusted_once_the_budget_file_no_longer_descends_from_it(
    fed: RunningFederation, tmp_path: Path
) -> None:
    from gateway.ops.spent import COVER_FILE

    data = fed.site(BJ).root / "data"
    _stat(fed)
    _backup(fed, tmp_path / "old")
    _stat(fed)
    _stop_bj(fed)
    # A clean restart records a cover over the whole ledger...
    Gateway(load_config(fed.site(BJ).config)).stop(grace=0.1)
    cover = json.loads((data / COVER_FILE).read_text())
    assert cover["ledger_size"] > 0 and cover["rows"] >= 2
    # ...an older budget file copied in by hand does not hold its newest spend,
    # so the whole ledger is read again and the missing release is found.
    for f in data.glob("budget.sqlite*"):
        f.unlink()
    shutil.copy2(tmp_path / "old" / "budget.sqlite", data / "budget.sqlite")
    with pytest.raises(VerificationFailed, match=r"1 more release\(s\) \(epsilon 0.25\)"):
        Gateway(load_config(fed.site(BJ).config))
    fed.gateways.pop(BJ)


def test_restore_refuses_a_backup_whose_ledger_does_not_extend_the_one_in_place(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backup of another history (the gateway ran on after an older backup
    was restored, while a newer backup of the first history was kept) is as
    long as the ledger in place but not its continuation: installing it would
    drop acknowledged entries and fork the log its witnesses cosigned."""
    from dataclasses import replace

    from tests.ledger.ledger_testkit import make_event

    _backup(fed, tmp_path / "old")
    _exchange(fed)
    _backup(fed, tmp_path / "new")
    _stop_bj(fed)
    data = fed.site(BJ).root / "data"
    for f in data.glob("ledger.sqlite*"):
        f.unlink()
    shutil.copy2(tmp_path / "old" / "ledger.sqlite", data / "ledger.sqlite")
    gw = Gateway(load_config(fed.site(BJ).config))
    try:  # the other history: one entry the newer backup does not hold
        gw.ledger.append(replace(make_event(1), local=BJ, request_id="the-other-history"))
        forked_size = gw.ledger.size
    finally:
        gw.stop(grace=0.1)
    before = (data / "ledger.sqlite").read_bytes()
    capsys.readouterr()
    assert (
        main(["restore", "--config", str(fed.site(BJ).config), "--from", str(tmp_path / "new")])
        == 1
    )
    err = capsys.readouterr().err
    assert "does not extend the current one" in err
    assert f"entry {forked_size - 1}" in err
    assert (data / "ledger.sqlite").read_bytes() == before  # nothing was changed
    fed.gateways.pop(BJ)


def test_restore_keeps_in_place_the_stores_a_backup_lacks_instead_of_wiping_them(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backup without the replay memory, the witness store or the accepted-bundle
    version (taken before they existed, or pruned by hand) moved the ones in place
    aside and installed nothing for them: the gateway came back with no replay
    memory, no cosigned checkpoints and no rollback protection for its bundle."""
    _exchange(fed)
    _backup(fed, tmp_path / "b")
    _stop_bj(fed)
    data = fed.site(BJ).root / "data"
    lacking = ("replay.sqlite", "witness.sqlite", "trust_bundle_state.json")
    for name in lacking:
        assert (data / name).is_file(), name
        (tmp_path / "b" / name).unlink()
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    for name in lacking:
        del manifest["files"][name]
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    before = {name: (data / name).read_bytes() for name in lacking}
    capsys.readouterr()
    assert (
        main(["restore", "--config", str(fed.site(BJ).config), "--from", str(tmp_path / "b")]) == 0
    )
    out = capsys.readouterr().out
    for name in lacking:
        assert (data / name).read_bytes() == before[name], name
        assert name in out  # named as kept
    fed.gateways.pop(BJ)


def test_restoring_an_old_backup_keeps_the_higher_accepted_bundle_version_so_a_revoked_bundle_stays_refused(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The attack: the authority replaced bundle version N (say it still pinned
    a stolen key); an attacker holding the old bundle file gets an operator to
    restore a backup taken under N. If the backup's trust_bundle_state.json
    (highest accepted: N) replaced the one in place (N+1), the gateway would
    accept the revoked bundle N again."""
    from gateway.trust import FileVersionStore, read_authority_signing_key, reissue_bundle_file

    data = fed.site(BJ).root / "data"
    _backup(fed, tmp_path / "b")
    old_bundle = fed.fed.bundle.read_bytes()
    old_version = FileVersionStore.in_dir(data).highest()
    authority = read_authority_signing_key(fed.fed.authority_key)
    reissue_bundle_file(fed.fed.bundle, authority)  # N+1 replaces (revokes) N
    assert fed.gateways[BJ].reload_bundle()
    assert FileVersionStore.in_dir(data).highest() == old_version + 1
    _stop_bj(fed)
    capsys.readouterr()
    assert (
        main(["restore", "--config", str(fed.site(BJ).config), "--from", str(tmp_path / "b")]) == 0
    )
    out = capsys.readouterr().out
    assert FileVersionStore.in_dir(data).highest() == old_version + 1
    assert (
        f"trust_bundle_state.json: kept the one in place (trust bundle version "
        f"{old_version + 1} accepted; the backup's says {old_version})" in out
    )
    # The revoked bundle put back is refused at start-up; the current one starts.
    current_bundle = fed.fed.bundle.read_bytes()
    fed.fed.bundle.write_bytes(old_bundle)
    with pytest.raises(GatewayError, match=f"older than version {old_version + 1}"):
        Gateway(load_config(fed.site(BJ).config))
    fed.fed.bundle.write_bytes(current_bundle)
    Gateway(load_config(fed.site(BJ).config)).stop(grace=0.1)
    fed.gateways.pop(BJ)


def test_restoring_an_old_backup_after_losing_the_ledger_forgets_no_request_id_so_replays_stay_refused(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ledger is lost (disk fault) but replay.sqlite survived. The backup's
    replay memory predates the last exchanges: installed alone, it would forget
    their request ids and a captured request resent within the timestamp window
    would be served again. Restore installs the union of both."""
    import sqlite3

    from gateway.errors import ReplayRejected
    from gateway.replay import SqliteReplayStore

    data = fed.site(BJ).root / "data"
    _backup(fed, tmp_path / "old")
    _exchange(fed)
    _exchange(fed)
    _stop_bj(fed)

    def seen() -> set[tuple[str, str, int]]:
        with sqlite3.connect(data / "replay.sqlite") as c:
            return set(c.execute("SELECT sender, request_id, timestamp_ms FROM seen_requests"))

    before = seen()
    with sqlite3.connect(tmp_path / "old" / "replay.sqlite") as c:
        in_backup = set(c.execute("SELECT sender, request_id, timestamp_ms FROM seen_requests"))
    newer = before - in_backup
    assert len(newer) >= 2  # the two exchanges after the backup
    for f in data.glob("ledger.sqlite*"):
        f.unlink()
    capsys.readouterr()
    assert (
        main(["restore", "--config", str(fed.site(BJ).config), "--from", str(tmp_path / "old")])
        == 0
    )
    assert seen() == before | in_backup
    store = SqliteReplayStore(data / "replay.sqlite", 300_000)
    try:
        for sender, request_id, ts in newer:
            with pytest.raises(ReplayRejected):
                store.check_and_record(sender, request_id, ts, ts)
    finally:
        store.close()
    out = capsys.readouterr().out
    assert "replay.sqlite: the backup's request ids merged with the ones in place" in out
    fed.gateways.pop(BJ)


def test_restore_refuses_when_the_accepted_bundle_version_in_place_is_unreadable_and_changes_nothing(
    fed: RunningFederation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Restore cannot tell whether the backup's version is lower than a corrupt
    state file's: it refuses (naming the file) rather than guess downwards."""
    _backup(fed, tmp_path / "b")
    _stop_bj(fed)
    data = fed.site(BJ).root / "data"
    (data / "trust_bundle_state.json").write_text("{not json")

    def files() -> dict[str, bytes]:  # SQLite's -wal/-shm come and go with any reader
        return {p.name: p.read_bytes() for p in data.glob("*") if p.suffix in (".sqlite", ".json")}

    before = files()
    capsys.readouterr()
    assert (
        main(["restore", "--config", str(fed.site(BJ).config), "--from", str(tmp_path / "b")]) == 2
    )
    err = capsys.readouterr().err
    assert "trust_bundle_state.json" in err and "move it aside" in err
    assert files() == before
    assert not list(data.glob("pre-restore-*")) and not list(data.glob(".*.restoring"))
    fed.gateways.pop(BJ)


def test_backup_to_an_existing_file_or_under_one_exits_2_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--out naming a file ended in a NotADirectoryError traceback."""
    from gateway.demo.setup import build_federation

    fed = build_federation(tmp_path / "fed", rows=5)
    config = fed.sites[BJ].config
    data_dir = load_config(config).data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "ledger.sqlite").touch()
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me\n")
    for out in (taken, taken / "backup"):
        assert main(["backup", "--config", str(config), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert str(taken) in err and "folder" in err
    assert taken.read_text() == "keep me\n"
