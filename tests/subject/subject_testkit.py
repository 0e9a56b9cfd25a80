"""A holder's ledger and index store, for the subject-access tests.

``open_holder`` opens them on SQLite files in a folder (the default) or, given
a PostgreSQL DSN and schema, on the shared database a gateway's replicas use
(``open_stores`` with ``[storage] url``): every test taking the ``holder``
fixture runs on both.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from gateway.config import StorageSettings
from gateway.crypto import SigningKey
from gateway.ledger.events import LedgerEvent
from gateway.ledger.ledger import Ledger, default_origin
from gateway.ledger.note import cosign, parse_note
from gateway.ledger.trustkeys import KeyEntry, Signer, TrustedKeys, witness_name_of
from gateway.limits import DEFAULT_LIMITS
from gateway.storage.backend import (
    LEDGER_FILE,
    SUBJECT_FILE,
    Stores,
    open_postgres_stores,
    open_sqlite_stores,
)
from gateway.subject.holder import HistoryResponder
from gateway.subject.index import index_key
from gateway.subject.indexer import Concerned, SubjectIndexer
from gateway.subject.store import SubjectIndexStore
from gateway.subject.verify import HolderKeys
from tests.ledger.ledger_testkit import ORIGIN, FakeClock, make_event

ALICE, BOB = "110105199003078515", "11010819910512545X"
WITNESS = "120000.gateway.dataexchange.cn/witness"
FIELDS = (("person_id", "mask"), ("name", "mask"))


@dataclass
class Holder:
    ledger: Ledger
    store: SubjectIndexStore
    indexer: SubjectIndexer
    history: HistoryResponder
    log_key: SigningKey
    witness_key: SigningKey
    key: bytes
    stores: Stores
    backend: Literal["sqlite", "postgres"]
    # Raw SQL on the stored state ("ledger" or "subject"), as someone editing
    # the holder's database behind its back would: ``?`` placeholders.
    _raw: Callable[[str, str, tuple[Any, ...]], list[tuple[Any, ...]]] = field(repr=False)

    def tamper(self, store: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        return self._raw(store, statement, params)

    def keys(self) -> HolderKeys:
        trusted = TrustedKeys(
            (
                Signer("110000", ORIGIN, witness_name_of("110000")),
                Signer("120000", default_origin("120000"), WITNESS),
            ),
            (
                KeyEntry("110000", "ledger", self.log_key.verify_key),
                KeyEntry("120000", "witness", self.witness_key.verify_key),
            ),
            "test keys",
        )
        return HolderKeys("110000", ORIGIN, (self.log_key.verify_key,), trusted)

    def exchange(self, i: int, concerned: Concerned | None, **kw: object) -> LedgerEvent:
        event = replace(make_event(i, details=(), **kw), request_id=str(uuid.uuid4()))
        self.indexer.append(event, concerned)
        return event

    def cosign_latest(self) -> None:
        cp = self.ledger.checkpoint_now()
        body, _ = parse_note(cp.note)
        line = cosign(body, WITNESS, self.witness_key, 1_700_000_000).line()
        self.ledger.add_cosignature_lines(cp.seq, [line])

    def close(self) -> None:
        self.stores.close()


def _sqlite_raw(folder: Path) -> Callable[[str, str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    files = {"ledger": folder / LEDGER_FILE, "subject": folder / SUBJECT_FILE}

    def run(store: str, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with sqlite3.connect(files[store]) as db:
            return list(db.execute(statement, params).fetchall())

    return run


def _postgres_raw(
    dsn: str, schema: str
) -> Callable[[str, str, tuple[Any, ...]], list[tuple[Any, ...]]]:
    def run(_store: str, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            cur = conn.execute(statement.replace("?", "%s"), params)  # type: ignore[call-overload]
            return list(cur.fetchall()) if cur.description else []

    return run


def open_holder(folder: Path, postgres: tuple[str, str] | None = None) -> Holder:
    """A holder on SQLite files in ``folder``, or on PostgreSQL ``(dsn, schema)``."""
    log_key = SigningKey(bytes(range(32)))
    if postgres is None:
        stores = open_sqlite_stores(folder, 300_000)
        raw = _sqlite_raw(folder)
    else:
        dsn, schema = postgres
        stores = open_postgres_stores(StorageSettings(url=dsn, schema=schema, pool_size=4), 300_000)
        raw = _postgres_raw(dsn, schema)
    ledger = Ledger(stores.ledger, log_key, ORIGIN, checkpoint_every=1000, clock=FakeClock())
    store = stores.subject
    key = index_key(b"p" * 32)
    return Holder(
        ledger,
        store,
        SubjectIndexer(ledger, store, key, DEFAULT_LIMITS),
        HistoryResponder(ledger, store, key, DEFAULT_LIMITS),
        log_key,
        SigningKey(bytes(range(1, 33))),
        key,
        stores,
        "sqlite" if postgres is None else "postgres",
        raw,
    )


def named(*ids: str, fields: tuple[tuple[str, str], ...] = FIELDS) -> Concerned:
    return Concerned("named", "household_register", tuple(sorted(ids)), fields)
