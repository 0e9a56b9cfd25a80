"""Shared checks of the source tests: a read refused as UNAVAILABLE, saying only what it may."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from gateway.errors import StorageFailure


def assert_each_unavailable(
    reads: Iterable[Callable[[], object]],
    match: str,
    hidden: Iterable[str] = (),
    *,
    no_cause: bool = False,
) -> None:
    """Every read fails with ``StorageFailure`` (UNAVAILABLE) matching ``match``,
    its message holding none of ``hidden``; ``no_cause``: nor does it chain the
    driver's error (whose text may hold the value)."""
    hidden = tuple(hidden)
    for read in reads:
        with pytest.raises(StorageFailure, match=match) as err:
            read()
        assert err.value.grpc_code.name == "UNAVAILABLE"
        for text in hidden:
            assert text not in str(err.value)
        if no_cause:
            assert err.value.__cause__ is None and err.value.__suppress_context__
