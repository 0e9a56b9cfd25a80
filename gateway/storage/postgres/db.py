"""One shared PostgreSQL database: pool, error translation, migrations, lock keys.

Owns: opening a psycopg connection pool for ``[storage] url`` (optionally in one
schema), the first connection that turns "unreachable", "no such database" and
"permission denied" into a ``StorageFailure`` naming the setting (never the
password), creating the schema and applying versioned migrations on start-up
(``schema.MIGRATIONS``; serialised by an advisory lock so replicas starting
together apply each exactly once), and advisory-lock keys scoped to the schema
(two jurisdictions sharing a database never share a lock). A transaction whose
connection is lost once its COMMIT is sent raises ``CommitUnknown`` (it may be
stored), any other failure ``StorageFailure`` (nothing of it is stored). Opened ``read_only``
(operator and officer tools that only read a gateway's state) it migrates
nothing, refuses a schema no gateway created or a newer one, and every
session is read-only.

Covered commits. A write whose durability a later ledger commit provides
(the holder's replay id, quota charge and refund: each made before the entry
of its exchange is appended, and acted on outside only once that entry is
committed) carries ``COVERED_COMMIT`` in its statement,
which makes that statement's own transaction commit asynchronously: visible
to every replica at once (so ids stay unique and quotas exact across them),
without waiting for its WAL to reach disk. PostgreSQL writes WAL in one
order and flushes it as a prefix, so the ledger's synchronous commit that
follows flushes the covered write too; a server crash can lose only covered
writes of exchanges whose entry was never committed (nothing of them left
the gateway). It is the counterpart of the SQLite replay and quota stores'
``synchronous=NORMAL``, and stronger (those are separate files, not one log).
The setting is transaction-local: the pooled session keeps
``synchronous_commit`` on for everything else.

Does not own: any table or query (each store module owns its own).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from gateway.errors import CommitUnknown, NotFound, StorageFailure
from gateway.storage.postgres.schema import MIGRATIONS

SETTING: Final = "[storage] url"
# A condition (always true) that makes the transaction of the statement it is
# part of commit asynchronously; only for covered writes (module docstring).
# Volatile, so evaluated at every row it filters: put it where rows always are.
COVERED_COMMIT: Final = "set_config('synchronous_commit', 'off', true) IS NOT NULL"
log = logging.getLogger("gateway.storage")

Connection = psycopg.Connection[tuple[Any, ...]]


def describe(url: str) -> str:
    """``user@host:port/dbname`` of a connection string; never the password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable connection string)"
    user = info.get("user") or "(default user)"
    host = info.get("host") or "(local socket)"
    port = info.get("port") or "5432"
    return f"{user}@{host}:{port}/{info.get('dbname') or '(default database)'}"


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:limit]


class PgDatabase:
    """A pool of autocommit connections to one database (and schema)."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int = 16,
        connect_timeout: float = 5.0,
        read_only: bool = False,
        idle_transaction_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._idle_ms = max(1, int(idle_transaction_timeout * 1000))
        self.where = describe(url)
        self._schema = schema
        self._read_only = read_only
        self._connect_timeout = connect_timeout
        self._last_check = 0.0
        self._down = False
        self._pipes = threading.local()  # this thread's pipelined transaction, if any
        probe = self.connect()
        try:
            if read_only:
                self._check_version(probe)
            else:
                self._migrate(probe)
            row = probe.execute("SELECT current_schema()").fetchone()
            self.schema = str(row[0]) if row and row[0] else "public"
        except psycopg.Error as exc:
            raise self._translate(exc, "opening the gateway's storage") from exc
        finally:
            probe.close()
        self.pool: psycopg_pool.ConnectionPool[Connection] = psycopg_pool.ConnectionPool(
            url,
            min_size=max(2, pool_size // 2),
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": int(connect_timeout)},
            configure=self._configure,
            open=False,
            timeout=5.0,  # a caller waits at most this for a connection (then UNAVAILABLE)
            name=f"gateway-{self.schema}",
        )
        try:
            self.pool.open(wait=True, timeout=max(connect_timeout, 5.0))
        except psycopg_pool.PoolTimeout as exc:
            self.pool.close()
            raise StorageFailure(
                f"{SETTING}: cannot open a connection pool to PostgreSQL at {self.where}"
            ) from exc

    @property
    def down(self) -> bool:
        """The last attempt found the database unreachable (until one succeeds)."""
        return self._down

    # -- connections -------------------------------------------------------

    def _configure(self, conn: Connection) -> None:
        # A session idle inside a transaction (its replica's machine died, or
        # the process was stopped, mid-append) is ended by the server, which
        # frees the locks it held: no TCP keepalive needed, no replica stalled.
        conn.execute(
            sql.SQL("SET idle_in_transaction_session_timeout = {}").format(
                sql.Literal(self._idle_ms)
            )
        )
        # The ledger is durable before any caller is answered, and covered
        # writes rely on its commit: a server or role whose default turns
        # synchronous commit off is overridden for the gateway's own sessions
        # (a stronger default, such as remote_apply, is kept).
        conn.execute(
            "SELECT set_config('synchronous_commit', 'on', false)"
            " WHERE current_setting('synchronous_commit') = 'off'"
        )
        if self._schema:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))
        if self._read_only:
            conn.execute("SET default_transaction_read_only = on")

    def connect(self, tcp_user_timeout_ms: int | None = None) -> Connection:
        """A new connection outside the pool (the lease, the probe, migrations).

        ``tcp_user_timeout_ms`` (libpq's ``tcp_user_timeout``): how long data
        this client sent may stay unacknowledged before its kernel drops the
        connection. Keepalives only probe an idle link; a statement sent on a
        link that went dead mid-way is otherwise retransmitted for many minutes,
        and the thread waiting for its answer stays blocked all that time."""
        extra: dict[str, Any] = (
            {} if tcp_user_timeout_ms is None else {"tcp_user_timeout": tcp_user_timeout_ms}
        )
        try:
            conn: Connection = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, int(self._connect_timeout)),
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=2,
                **extra,
            )
        except psycopg.Error as exc:
            raise self._translate(exc, "connecting") from exc
        try:
            self._configure(conn)
        except psycopg.Error as exc:
            conn.close()
            raise self._translate(exc, "connecting") from exc
        return conn

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn driver errors into ``StorageFailure`` (UNAVAILABLE) with a bounded message."""
        try:
            yield
        except psycopg_pool.PoolTimeout as exc:
            # A ``psycopg.OperationalError`` too, but while the database is not
            # known to be down it means every pooled connection is busy: not an
            # outage, and later callers must keep waiting the full time.
            if self._down:
                raise self._translate(exc, what) from exc
            raise StorageFailure(
                f"{what}: no database connection free in time ({SETTING} = {self.where}; "
                "every pooled connection is busy: raise [storage] pool_size or add replicas)"
            ) from exc
        except psycopg.Error as exc:
            raise self._translate(exc, what) from exc

    def _translate(self, exc: BaseException, what: str) -> StorageFailure:
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            needs = (
                "USAGE on the schema and SELECT on its tables"
                if self._read_only
                else "CREATE on the database or schema, and use of its tables"
            )
            return StorageFailure(
                f"{what}: the PostgreSQL role lacks rights ({SETTING} = {self.where}; grant it "
                f"{needs}): {_first_line(exc)}"
            )
        text = str(exc)
        if isinstance(exc, psycopg.errors.InvalidCatalogName) or (
            isinstance(exc, psycopg.OperationalError)
            and "database" in text
            and "does not exist" in text
        ):
            return StorageFailure(
                f"{what}: no such PostgreSQL database ({SETTING} = {self.where}); create it "
                "or fix the URL's database name"
            )
        if isinstance(exc, psycopg.OperationalError) and (
            "authentication failed" in text or ("role" in text and "does not exist" in text)
        ):
            return StorageFailure(
                f"{what}: PostgreSQL refused the login ({SETTING} = {self.where}): check the "
                "user and its password (~/.pgpass or PGPASSWORD)"
            )
        if isinstance(exc, psycopg.OperationalError):
            self._down = True
            self._recheck_pool()
            return StorageFailure(
                f"{what}: PostgreSQL unreachable ({SETTING} = {self.where}): {_first_line(exc)}"
            )
        return StorageFailure(f"{what}: database error: {_first_line(exc)}")

    def _recheck_pool(self) -> None:
        """After a lost connection, test the idle pooled connections in the
        background (broken ones are replaced), at most once a second, so a
        database outage costs each caller one failure, not one per stale
        connection."""
        pool = getattr(self, "pool", None)
        now = time.monotonic()
        if pool is None or now - self._last_check < 1.0:
            return
        self._last_check = now
        threading.Thread(target=pool.check, name="storage-pool-check", daemon=True).start()

    def _wait(self) -> float:
        # While the database is known to be unreachable, fail callers fast
        # (UNAVAILABLE) instead of making each wait for a connection.
        return 0.5 if self._down else 5.0

    @contextmanager
    def transaction(self, what: str, *, pipelined: bool = False) -> Iterator[Connection]:
        """One pooled connection inside one transaction (committed on success).

        ``pipelined``: in libpq's pipeline mode, statements are sent without
        waiting for each answer, so BEGIN travels with the first query and the
        last statement with COMMIT: two round trips for a read-then-write
        transaction instead of four. Results and errors are still each
        statement's own; the commit is confirmed before this block returns."""
        with self.errors(what):
            with self.pool.connection(timeout=self._wait()) as conn:
                committing = False  # the block is done: what fails now is the COMMIT
                try:
                    if pipelined:
                        with conn.pipeline() as pipe, conn.transaction():
                            self._pipes.current = pipe
                            try:
                                yield conn
                            finally:
                                self._pipes.current = None
                            committing = True
                    else:
                        with conn.transaction():
                            yield conn
                            committing = True
                except psycopg.OperationalError as exc:
                    if committing and conn.broken:
                        raise self._commit_unknown(exc, what) from exc
                    raise
            self._down = False

    def _commit_unknown(self, exc: psycopg.OperationalError, what: str) -> CommitUnknown:
        """The connection was lost once the COMMIT was sent: it may have been
        applied or not (a failure before it certainly rolled everything back)."""
        self._translate(exc, what)  # marks the database down, rechecks the pool
        return CommitUnknown(
            f"{what}: PostgreSQL connection lost at COMMIT ({SETTING} = {self.where}): "
            f"the transaction may or may not be stored: {_first_line(exc)}"
        )

    def sync(self) -> None:
        """Inside this thread's pipelined transaction: send what is queued with a
        Sync and wait for the results (the one round trip a fetch would cost).
        The server then sees the session idle in its transaction, not busy, so
        ``idle_in_transaction_session_timeout`` ends it if the client never
        comes back (its locks freed); between Syncs a pipelined session counts
        as active, which no timeout of PostgreSQL 13 ends."""
        pipe: psycopg.Pipeline | None = getattr(self._pipes, "current", None)
        if pipe is not None:
            pipe.sync()

    @contextmanager
    def connection(self, what: str) -> Iterator[Connection]:
        """One pooled connection in autocommit mode (each statement its own transaction)."""
        with self.errors(what):
            with self.pool.connection(timeout=self._wait()) as conn:
                yield conn
            self._down = False

    # -- locks ---------------------------------------------------------------

    def lock_key(self, purpose: str) -> int:
        """A signed 64-bit advisory-lock key for ``purpose`` within this schema."""
        digest = hashlib.sha256(f"jgw:{self.schema}:{purpose}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    # -- migrations ------------------------------------------------------------

    def _migrate(self, conn: Connection) -> None:
        with conn.transaction():
            # One replica migrates; the others wait here, then find nothing to do.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            if self._schema:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema))
                )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS gateway_schema ("
                " version INTEGER PRIMARY KEY,"
                " description TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            applied = {int(r[0]) for r in conn.execute("SELECT version FROM gateway_schema")}
            self._refuse_newer(applied)
            for m in MIGRATIONS:
                if m.version in applied:
                    continue
                for statement in m.statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO gateway_schema (version, description) VALUES (%s, %s)",
                    (m.version, m.description),
                )
                log.info("storage: applied schema migration %d (%s)", m.version, m.description)

    def _check_version(self, conn: Connection) -> None:
        """Read-only: the schema must be one a gateway created, not newer than known."""
        try:
            rows = conn.execute("SELECT version FROM gateway_schema").fetchall()
        except psycopg.errors.UndefinedTable as exc:
            where = f"schema {self._schema}" if self._schema else "its default schema"
            raise NotFound(
                f"{SETTING} = {self.where}: no gateway state in {where} (no gateway has run "
                "on it; check [storage] url and schema)"
            ) from exc
        self._refuse_newer({int(r[0]) for r in rows})

    def _refuse_newer(self, applied: set[int]) -> None:
        known = {m.version for m in MIGRATIONS}
        newer = applied - known
        if newer:
            raise StorageFailure(
                f"{SETTING} = {self.where}: the database schema is at version "
                f"{max(newer)}, newer than this gateway knows ({max(known)}); "
                "upgrade the gateway before starting it on this database"
            )

    def schema_version(self) -> int:
        with self.connection("reading the schema version") as conn:
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM gateway_schema").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.pool.close()


# Migrations run before the schema name is known to the lock-key helper; one
# fixed key per database is fine (migrations are rare and short).
_MIGRATION_LOCK: Final = int.from_bytes(
    hashlib.sha256(b"jgw:migrations").digest()[:8], "big", signed=True
)
