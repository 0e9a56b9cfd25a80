"""The checkpoint-signing lease on PostgreSQL: one replica at a time.

Owns: holding a session-level advisory lock on a dedicated connection (not
from the pool). Whoever holds it runs the checkpoint cadence and the witness
rounds; a background thread re-checks the connection every ``interval``
seconds and tries to take the lock when free. PostgreSQL releases the lock
the moment the holder's session ends: a killed process closes its socket at
once; a dead machine is noticed by TCP keepalives within about ten seconds.
A holder that loses its connection stops acting as holder at its next check;
on a link that hangs (no error, no answer) its own side gives up within
``LINK_TIMEOUT_MS`` too (libpq's ``tcp_user_timeout`` on the lease's
connection), so the lease thread is not left blocked until the kernel's
retransmissions run out, and the replica can take the lease again.
Its keep-alive (``SELECT 1`` on that connection) runs under a statement timeout
of ``KEEPALIVE_INTERVALS`` check intervals (2 s): one that times out, fails, or
answers later counts as losing the lease (logged once; the session is closed,
which frees the lock for the other replicas), and ``held`` says False as soon
as a keep-alive has run longer than that, so a holder cut off that way stops
signing within that time. A watchdog then shuts the lease connection's socket
down (a statement hung on a link that neither errors nor answers never reaches
the server, so its statement timeout cannot end it; the client's TCP timeout
does not fire while a middlebox acknowledges the bytes): the lease thread
blocked on it returns at once, drops the session and tries for the lease again.
The same bound applies to the lease's other statements (its session settings,
its tries for the lock).

``PgCheckpointAsks``: a replica without the lease that is asked for a
checkpoint newer than the last one (a proof for the newest entries) never
signs it: it sends ``NOTIFY`` on a channel scoped to the schema with the size
it needs, and the holder, which ``LISTEN``s on its own connection, signs at
once; the asker reads the stored checkpoint (``gateway.ledger.ledger``).

Safety does not rest on the lease: appends and checkpoints are serialised by
the ledger's append lock and checkpoint sizes are unique in the schema, so even
two replicas that both believed they held the lease could not store two
checkpoints for one size or two roots. The lease keeps the work in one place.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final

import psycopg
from psycopg import sql

from gateway.errors import StorageFailure
from gateway.storage.postgres.db import Connection, PgDatabase

log = logging.getLogger("gateway.storage")

# A keep-alive (or a try for the lock) may take this many check intervals.
KEEPALIVE_INTERVALS: Final = 2.0
# A dead link on the lease's session is given up within this long, by both
# ends: the server (tcp_user_timeout and keepalives set on the session), which
# frees the lock, and this client (libpq's tcp_user_timeout and keepalives),
# whose lease thread, blocked on a keep-alive sent into the dead link, then gets
# an error, drops the session and tries for the lease again.
LINK_TIMEOUT_MS: Final = 10_000


class PgLease:
    # The keep-alive a holder runs at each check (a class attribute so a test
    # can make it block on the server).
    keepalive_sql = "SELECT 1"

    def __init__(
        self, db: PgDatabase, purpose: str = "checkpoint-signer", interval: float = 1.0
    ) -> None:
        self._db = db
        self._key = db.lock_key(purpose)
        self._interval = interval
        # How long a keep-alive (or a try for the lock) may take: the server
        # cancels it then (statement_timeout), and ``held`` says False as soon as
        # one has run longer, even while it is still stuck on a hung connection.
        self.keepalive_timeout = KEEPALIVE_INTERVALS * interval
        self._conn: Connection | None = None
        self._held = threading.Event()
        # The statement in flight on the lease connection: its monotonic start and
        # the connection (None once the watchdog has shut it down), under _flight.
        self._flight = threading.Lock()
        self._flight_since: float | None = None
        self._flight_conn: Connection | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one check at a time (the connection)
        self._losing = threading.Lock()  # the held -> lost transition, logged once
        self._thread = threading.Thread(target=self._run, name="storage-lease", daemon=True)
        self._watchdog = threading.Thread(
            target=self._watch, name="storage-lease-watchdog", daemon=True
        )

    def held(self) -> bool:
        if not self._held.is_set():
            return False
        return not self._overdue()

    def _overdue(self) -> bool:
        """Whether the statement in flight on the lease connection has run longer
        than ``keepalive_timeout``. The first time: the lease is lost (a holder's
        keep-alive) and the connection's socket shut down, so the thread blocked
        on it gets an error at once instead of waiting on a link that hangs."""
        with self._flight:
            since, conn = self._flight_since, self._flight_conn
            if since is None or time.monotonic() - since <= self.keepalive_timeout:
                return False
            if conn is None:
                return True  # shut down already; the blocked thread is returning
            self._flight_conn = None
            # A duplicate of libpq's socket, taken while the connection is still
            # open: its descriptor number cannot have been reused by another.
            try:
                sock: socket.socket | None = socket.socket(fileno=os.dup(conn.pgconn.socket))
            except (psycopg.Error, OSError):
                sock = None  # closed meanwhile: nothing is blocked on it
        self._lose(f"its keep-alive has not answered within {self.keepalive_timeout:g} s")
        if sock is not None:
            with sock:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        return True

    @contextlib.contextmanager
    def _watched(self, conn: Connection) -> Iterator[None]:
        """A statement on the lease connection, shut down by ``_overdue`` if it
        runs longer than ``keepalive_timeout``."""
        with self._flight:
            self._flight_since, self._flight_conn = time.monotonic(), conn
        try:
            yield
        finally:
            with self._flight:
                self._flight_since = self._flight_conn = None

    def _watch(self) -> None:
        tick = max(0.01, min(0.25, self._interval / 4))
        # Until the lease thread has ended: stop() waits for a check in flight.
        while not self._stop.is_set() or self._thread.is_alive():
            time.sleep(tick)
            self._overdue()

    def _lose(self, why: str) -> None:
        with self._losing:
            if not self._held.is_set():
                return
            self._held.clear()
        log.warning(
            "storage: checkpoint-signing lease lost (%s); this replica stops signing "
            "checkpoints until it holds the lease again",
            why,
            extra={"event": "lease_lost"},
        )

    def start(self) -> PgLease:
        self._watchdog.start()
        self.poll()
        self._thread.start()
        return self

    def poll(self) -> bool:
        """One check: keep or try to take the lease. Returns whether it is held."""
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    # A hung link unblocks this thread within LINK_TIMEOUT_MS
                    # (the client's own TCP timeout; keepalives alone never fire
                    # while a keep-alive sent is unacknowledged).
                    self._conn = conn = self._db.connect(tcp_user_timeout_ms=LINK_TIMEOUT_MS)
                    timeout_ms = max(1, int(self.keepalive_timeout * 1000))
                    with self._watched(conn):
                        # The server notices a dead holder machine (no FIN) by TCP
                        # keepalive on this session, and frees the lease, in ~10 s.
                        conn.execute(
                            sql.SQL(
                                "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2;"
                                " SET tcp_keepalives_count = 3; SET tcp_user_timeout = {};"
                                " SET statement_timeout = {}"
                            ).format(sql.Literal(LINK_TIMEOUT_MS), sql.Literal(timeout_ms))
                        )
                if self._held.is_set():
                    self._keepalive(self._conn)
                else:
                    with self._watched(self._conn):
                        row = self._conn.execute(
                            "SELECT pg_try_advisory_lock(%s)", (self._key,)
                        ).fetchone()
                    if row and row[0]:
                        self._held.set()
                        log.info("storage: this replica now holds the checkpoint-signing lease")
            except psycopg.errors.QueryCanceled:
                self._lose(f"its keep-alive did not answer within {self.keepalive_timeout:g} s")
                self._drop()
            except (psycopg.Error, StorageFailure) as exc:
                lines = str(exc).strip().splitlines()
                self._lose(lines[0][:300] if lines else type(exc).__name__)
                self._drop()
        return self._held.is_set()

    def _keepalive(self, conn: Connection) -> None:
        started = time.monotonic()
        with self._watched(conn):
            conn.execute(self.keepalive_sql)
        took = time.monotonic() - started
        if took > self.keepalive_timeout or not self._held.is_set():
            # Answered too late: this replica already stopped acting as holder
            # (``held``); end the session so the server frees the lock for the others.
            self._lose(f"its keep-alive took {took:.1f} s (at most {self.keepalive_timeout:g} s)")
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._watchdog.is_alive():
            self._watchdog.join(timeout=5)
        self._held.clear()
        # A check stuck on a hung connection ends within keepalive_timeout (the
        # watchdog shuts its socket down); if the join gave up first, the server
        # ends that session by itself (TCP keepalive) and frees the lease then.
        if self._lock.acquire(timeout=5):
            try:
                self._drop()  # closing the session releases the lock at once
            finally:
                self._lock.release()


class PgCheckpointAsks:
    """Checkpoint requests to the lease holder over ``LISTEN``/``NOTIFY``."""

    def __init__(self, db: PgDatabase, wait: float = 0.5) -> None:
        self._db = db
        digest = hashlib.sha256(f"jgw:{db.schema}:checkpoint-asks".encode()).hexdigest()
        self.channel = f"jgw_cp_{digest[:24]}"  # one per schema (jurisdiction)
        self._wait = wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sign: Callable[[], object] | None = None

    def ask(self, size: int) -> None:
        with self._db.connection("asking the lease holder for a checkpoint") as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (self.channel, str(size)))

    def serve(self, sign: Callable[[], object]) -> None:
        if self._thread is not None:
            return
        self._sign = sign
        self._thread = threading.Thread(target=self._run, name="checkpoint-asks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self._db.connect()
                    # Asks sent while not listening are lost; askers repeat theirs.
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                asked = False
                for _ in conn.notifies(timeout=self._wait, stop_after=1):
                    asked = True
                if asked:
                    self._call()
            except (psycopg.Error, StorageFailure) as exc:
                log.warning("storage: listening for checkpoint requests: %s", exc)
                if conn is not None:
                    try:
                        conn.close()
                    except psycopg.Error:
                        pass
                conn = None
                self._stop.wait(1.0)
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def _call(self) -> None:
        assert self._sign is not None
        try:
            self._sign()
        except Exception as exc:  # keep listening; the asker times out and says so
            log.warning("storage: signing an asked-for checkpoint failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)
