"""Header checks of signed peer messages (pure functions)."""

from __future__ import annotations

import pytest

from gateway.envelope import check_header, make_header, new_request_id
from gateway.errors import CryptoFailure, InvalidArgument, ReplayRejected, Unauthenticated

NOW = 1_790_000_000_000
RID = new_request_id()


def _check(**over: object) -> None:
    h = make_header("130000", "110000", RID, NOW, 3, request_digest=b"d" * 32)
    kwargs: dict[str, object] = dict(signer="130000", me="110000", now_ms=NOW, window_ms=300_000)
    kwargs.update(over)
    check_header(h, **kwargs)  # type: ignore[arg-type]


def test_good_header_passes() -> None:
    _check()
    _check(request_id=RID, request_digest=b"d" * 32)


def test_sender_must_be_signer() -> None:
    with pytest.raises(Unauthenticated):
        _check(signer="120000")


def test_misdirected_message_is_refused() -> None:
    with pytest.raises(Unauthenticated, match="addressed to"):
        _check(me="120000")


@pytest.mark.parametrize("skew", [300_001, -300_001, 86_400_000])
def test_timestamp_outside_window_is_refused(skew: int) -> None:
    with pytest.raises(ReplayRejected):
        _check(now_ms=NOW + skew)


@pytest.mark.parametrize("skew", [300_000, -300_000, 0])
def test_timestamp_at_window_edge_is_accepted(skew: int) -> None:
    _check(now_ms=NOW + skew)


def test_response_bound_to_other_request_is_refused() -> None:
    with pytest.raises(CryptoFailure):
        _check(request_digest=b"e" * 32)
    with pytest.raises(CryptoFailure):
        _check(request_id=new_request_id())


def test_malformed_request_id_is_invalid_argument() -> None:
    h = make_header("130000", "110000", "not-a-uuid", NOW, 1)
    with pytest.raises(InvalidArgument):
        check_header(h, signer="130000", me="110000", now_ms=NOW, window_ms=1000)
