"""The checkpoint-signing lease: which process signs checkpoints and runs witnessing.

Owns: the ``Lease`` Protocol and ``SoleWriter`` (a gateway on SQLite is the
only process on its files, so it always holds the lease); the
``CheckpointAsks`` Protocol, by which a replica without the lease asks the
holder for a checkpoint (only the holder ever signs one), and ``NoAsks`` (on
SQLite nobody else could answer: the one process holds the lease). The
PostgreSQL lease and asks, shared by replicas, are in
``gateway.storage.postgres.lease``.
"""

from __future__ import annotations

from collections.abc import Callable
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


class CheckpointAsks(Protocol):
    def ask(self, size: int) -> None:
        """Tell the lease holder a checkpoint covering ``size`` entries is wanted (no wait)."""
        ...

    def serve(self, sign: Callable[[], object]) -> None:
        """From now on call ``sign`` promptly whenever a replica asks (``sign``
        signs only while this process holds the lease)."""
        ...

    def stop(self) -> None: ...


class NoAsks:
    def ask(self, size: int) -> None:
        return None

    def serve(self, sign: Callable[[], object]) -> None:
        return None

    def stop(self) -> None:
        return None
