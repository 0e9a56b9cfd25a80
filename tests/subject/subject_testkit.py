"""A holder's ledger and index store in a folder, for the subject-access tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from gateway.crypto import SigningKey
from gateway.ledger.events import LedgerEvent
from gateway.ledger.ledger import SqliteLedger
from gateway.ledger.note import cosign, parse_note
from gateway.limits import DEFAULT_LIMITS
from gateway.subject.holder import HistoryResponder
from gateway.subject.index import index_key
from gateway.subject.indexer import Concerned, SubjectIndexer
from gateway.subject.store import SqliteSubjectIndexStore
from gateway.subject.verify import HolderKeys
from tests.ledger.ledger_testkit import ORIGIN, FakeClock, make_event

ALICE, BOB = "110105199003078515", "11010819910512545X"
WITNESS = "120000.gateway.dataexchange.cn/witness"
FIELDS = (("person_id", "mask"), ("name", "mask"))


@dataclass
class Holder:
    ledger: SqliteLedger
    store: SqliteSubjectIndexStore
    indexer: SubjectIndexer
    history: HistoryResponder
    log_key: SigningKey
    witness_key: SigningKey
    key: bytes

    def keys(self) -> HolderKeys:
        return HolderKeys(
            "110000", ORIGIN, (self.log_key.verify_key,), {WITNESS: self.witness_key.verify_key}
        )

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
        self.store.close()
        self.ledger.close()


def open_holder(folder: Path) -> Holder:
    log_key = SigningKey(bytes(range(32)))
    ledger = SqliteLedger(
        folder / "ledger.sqlite", log_key, ORIGIN, checkpoint_every=1000, clock=FakeClock()
    )
    store = SqliteSubjectIndexStore(folder / "subject_index.sqlite")
    key = index_key(b"p" * 32)
    return Holder(
        ledger,
        store,
        SubjectIndexer(ledger, store, key, DEFAULT_LIMITS),
        HistoryResponder(ledger, store, key, DEFAULT_LIMITS),
        log_key,
        SigningKey(bytes(range(1, 33))),
        key,
    )


def named(*ids: str, fields: tuple[tuple[str, str], ...] = FIELDS) -> Concerned:
    return Concerned("named", "household_register", tuple(sorted(ids)), fields)
