"""The checkpoint-signing lease: which process runs the checkpoint cadence and witnessing.

Owns: the ``Lease`` Protocol and ``SoleWriter`` (a gateway on SQLite is the
only process on its files, so it always holds the lease). The PostgreSQL
lease, shared by replicas, is ``gateway.storage.postgres.lease.PgLease``.
"""

from __future__ import annotations

from typing import Protocol


class Lease(Protocol):
    def held(self) -> bool:
        """Whether this process may sign cadence checkpoints and run witness rounds now."""
        ...

    def start(self) -> Lease: ...

    def stop(self) -> None: ...


class SoleWriter:
    def held(self) -> bool:
        return True

    def start(self) -> SoleWriter:
        return self

    def stop(self) -> None:
        return None
