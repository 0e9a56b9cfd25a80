"""Holding the policy set in force, and replacing it whole on change.

Owns: ``PolicyStore`` (the current immutable PolicySet; ``reload()`` swaps
in a complete new set or keeps the last good one and says why), the
``PolicyWatcher`` daemon thread that polls the folder once a second, and
``install_sighup_handler``. Does not own: parsing or validation
(``gateway.policy.loader``), evaluation (``gateway.policy.engine``) or server
startup (the lead wires these in).

A bad set at construction raises PolicyFileError (a gateway refuses to
start). A bad set on reload is never partly applied: the old set stays in
force, the reason is logged and returned, and ``last_error`` keeps it.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from gateway.catalogue import CATALOGUE_FILE
from gateway.errors import InvalidArgument, PolicyFileError
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.policy.loader import AGREEMENTS_DIR, PolicySet, load_policy_set

log = logging.getLogger("gateway.policy")


@dataclass(frozen=True)
class ReloadResult:
    changed: bool  # a new set is now in force
    digest: str  # digest of the set in force after the attempt
    previous_digest: str
    error: str  # "" on success; why the new files were refused otherwise
    trigger: str

    @property
    def ok(self) -> bool:
        return not self.error


Fingerprint = tuple[tuple[str, int, int], ...]


class PolicyStore:
    """The current policy set of one holder folder; thread-safe swaps."""

    def __init__(self, root: Path | str, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self._root = Path(root)
        self._limits = limits
        self._lock = threading.Lock()
        self._listeners: list[Callable[[ReloadResult], None]] = []
        self._fingerprint = self.fingerprint()
        self._current = load_policy_set(self._root, limits)  # raises PolicyFileError
        self.last_error = ""
        log.info(
            "policy set %s loaded from %s (%d agreements)",
            self._current.digest,
            self._root,
            len(self._current.agreements),
        )

    @property
    def root(self) -> Path:
        return self._root

    @property
    def current(self) -> PolicySet:
        return self._current  # one attribute read: atomic

    def subscribe(self, listener: Callable[[ReloadResult], None]) -> None:
        """Call ``listener`` after every reload attempt (e.g. to record it)."""
        self._listeners.append(listener)

    def fingerprint(self) -> Fingerprint:
        """Cheap change detector: (name, mtime_ns, size) of the policy files."""
        # statistics.yaml is watched too: its reload listener (gateway.stats) re-reads it.
        paths = [self._root / CATALOGUE_FILE, self._root / "statistics.yaml"]
        folder = self._root / AGREEMENTS_DIR
        try:
            if folder.is_dir():
                paths.extend(sorted(folder.iterdir()))
        except OSError:
            pass
        out = []
        for p in paths:
            try:
                st = p.stat()
                out.append((p.name, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((p.name, -1, -1))
        return tuple(out)

    def reload(self, trigger: str = "manual") -> ReloadResult:
        with self._lock:
            old = self._current
            self._fingerprint = self.fingerprint()
            try:
                new = load_policy_set(self._root, self._limits)
            except PolicyFileError as exc:
                self.last_error = str(exc)
                result = ReloadResult(False, old.digest, old.digest, str(exc), trigger)
                log.warning(
                    "policy reload (%s) refused; keeping set %s: %s", trigger, old.digest, exc
                )
            else:
                self.last_error = ""
                changed = new.digest != old.digest
                if changed:
                    self._current = new
                    log.info(
                        "policy reload (%s): set %s now in force (was %s)",
                        trigger,
                        new.digest,
                        old.digest,
                    )
                result = ReloadResult(changed, self._current.digest, old.digest, "", trigger)
        for listener in list(self._listeners):
            try:
                listener(result)
            except Exception:  # a listener must not break reloads
                log.exception("policy reload listener failed")
        return result

    def reload_if_changed(self, trigger: str = "file change") -> ReloadResult | None:
        if self.fingerprint() == self._fingerprint:
            return None
        return self.reload(trigger)


class PolicyWatcher:
    """Polls the folder every ``interval`` seconds; reloads on change. Stoppable."""

    def __init__(self, store: PolicyStore, interval: float = 1.0) -> None:
        if interval <= 0:
            raise InvalidArgument.expected("watch interval", "> 0 seconds", interval)
        self._store = store
        self._interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PolicyWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="policy-watcher", daemon=True)
            self._thread.start()
        return self

    def poke(self) -> None:
        """Ask for a reload now (used by the SIGHUP handler)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> PolicyWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            poked = self._wake.wait(self._interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                if poked:
                    self._store.reload("SIGHUP")
                else:
                    self._store.reload_if_changed()
            except Exception:  # keep watching whatever happens
                log.exception("policy watcher: reload failed")


def install_sighup_handler(
    store: PolicyStore, watcher: PolicyWatcher | None = None
) -> Callable[[], None]:
    """Reload on SIGHUP. Must be called from the main thread. The handler does
    no work itself: it pokes the watcher (or starts a short thread), so it can
    never deadlock with a reload in progress. Returns a function restoring the
    previous handler."""
    if threading.current_thread() is not threading.main_thread():
        raise InvalidArgument("install_sighup_handler must be called from the main thread")
    if not hasattr(signal, "SIGHUP"):  # pragma: no cover - not on POSIX
        return lambda: None

    def handler(_signum: int, _frame: FrameType | None) -> None:
        if watcher is not None:
            watcher.poke()
        else:
            threading.Thread(
                target=store.reload, args=("SIGHUP",), name="policy-sighup", daemon=True
            ).start()

    previous = signal.signal(signal.SIGHUP, handler)

    def restore() -> None:
        signal.signal(signal.SIGHUP, previous)

    return restore


__all__ = [
    "PolicyStore",
    "PolicyWatcher",
    "ReloadResult",
    "install_sighup_handler",
]
