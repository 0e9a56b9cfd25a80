"""Reload: a bad set never replaces the good one (and is never partly applied);
file changes and SIGHUP bring in a good new set; decisions name the set in force."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import PolicyDenied, PolicyFileError
from gateway.policy import (
    AccessRequest,
    PolicyEngine,
    PolicyStore,
    PolicyWatcher,
    ReloadResult,
    SqliteQuotaStore,
    install_sighup_handler,
)
from tests.policy.policy_testkit import NOW_MS, SECRET, HolderDir, base_agreement


def request(purpose: str = "housing_fund_transfer") -> AccessRequest:
    return AccessRequest(
        "130000", "hebei-housing-fund", "110000", "si_contributions", purpose, (), 1, "r", NOW_MS
    )


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_bad_set_at_startup_refuses_to_start(holder_dir: Callable[..., HolderDir]) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement(fields=[{"name": "salary", "transform": "pass"}]))
    with pytest.raises(PolicyFileError, match=r"a\.yaml:\d+: error: field fields\.0\.name"):
        PolicyStore(h.root)


def test_reload_keeps_last_good_set_on_bad_file_and_says_why(
    holder_dir: Callable[..., HolderDir], tmp_path: Path
) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement())
    store = PolicyStore(h.root)
    results: list[ReloadResult] = []
    store.subscribe(results.append)
    engine = PolicyEngine(
        store, SqliteQuotaStore(tmp_path / "q.sqlite"), SECRET, clock=lambda: NOW_MS
    )
    good = store.current.digest
    # One good new agreement and one bad file: neither is applied.
    h.write("b.yaml", base_agreement(id="b", purposes=["commuter_planning"]))
    h.write("c.yaml", base_agreement(id="c") | {"colour": "blue"})
    res = store.reload("test")
    assert not res.ok and not res.changed and res.digest == good
    assert "c.yaml" in res.error and "unknown key" in res.error
    assert store.last_error == res.error and results == [res]
    assert store.current.digest == good
    d = engine.decide(request("commuter_planning"))
    assert not d.allowed and d.policy_set_digest == good  # b.yaml not partly loaded
    # Fix the bad file: the whole new set comes in.
    (h.root / "agreements" / "c.yaml").unlink()
    res2 = store.reload("test")
    assert res2.ok and res2.changed and res2.previous_digest == good
    assert store.last_error == ""
    d2 = engine.decide(request("commuter_planning"))
    assert d2.allowed and d2.agreement_id == "b" and d2.policy_set_digest == res2.digest
    # Reload without change: nothing changes.
    assert not store.reload().changed


def test_decision_made_before_agreement_changed_cannot_release(
    holder_dir: Callable[..., HolderDir], tmp_path: Path
) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement())
    store = PolicyStore(h.root)
    engine = PolicyEngine(
        store, SqliteQuotaStore(tmp_path / "q.sqlite"), SECRET, clock=lambda: NOW_MS
    )
    d = engine.decide(request())
    assert d.allowed
    h.write("a.yaml", base_agreement(fields=[{"name": "employer", "transform": "pass"}]))
    assert store.reload().changed
    with pytest.raises(PolicyDenied, match="changed or was withdrawn"):
        engine.release(d, request(), [{"person_id": "110101199003078515", "employer": "x"}])


def test_watcher_reloads_on_file_change(holder_dir: Callable[..., HolderDir]) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement())
    store = PolicyStore(h.root)
    before = store.current.digest
    with PolicyWatcher(store, interval=0.05):
        h.write("b.yaml", base_agreement(id="b", purposes=["commuter_planning"]))
        assert wait_for(lambda: store.current.digest != before)
        assert "b" in store.current.by_id
        # A bad edit while running: the last good set stays, the reason is kept.
        good = store.current.digest
        h.write("b.yaml", "kind: sharing-agreement\nid: b\n")
        assert wait_for(lambda: "not loaded" in store.last_error)
        assert store.current.digest == good


def test_sighup_reloads(holder_dir: Callable[..., HolderDir]) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement())
    store = PolicyStore(h.root)
    before = store.current.digest
    h.write("b.yaml", base_agreement(id="b", purposes=["commuter_planning"]))
    restore = install_sighup_handler(store)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_for(lambda: store.current.digest != before)
    finally:
        restore()


def test_sighup_pokes_watcher(holder_dir: Callable[..., HolderDir]) -> None:
    h = holder_dir("110000")
    h.write("a.yaml", base_agreement())
    store = PolicyStore(h.root)
    seen: list[str] = []
    store.subscribe(lambda r: seen.append(r.trigger))
    with PolicyWatcher(store, interval=60) as watcher:
        restore = install_sighup_handler(store, watcher)
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            assert wait_for(lambda: seen == ["SIGHUP"])
        finally:
            restore()


def test_sighup_handler_only_from_main_thread(holder_dir: Callable[..., HolderDir]) -> None:
    import threading

    h = holder_dir("110000")
    store = PolicyStore(h.root)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            install_sighup_handler(store)
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert errors and "main thread" in str(errors[0])
