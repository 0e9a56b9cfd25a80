"""`gateway call bulk --out`: the extract holds records about people, and only the
holder's completion makes it complete.

The gateway's stream is stood in for (``ServiceClient.stream_records``): what is
tested is what the command does with the messages and the file."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway._proto.dataexchange.gateway.v1 import common_pb2, service_pb2
from gateway.cli import main
from gateway.client import ServiceClient
from gateway.crypto import make_tls_identity


def _messages(completed: bool) -> Iterator[service_pb2.StreamRecordsResponse]:
    yield service_pb2.StreamRecordsResponse(
        started=service_pb2.StreamStarted(request_id="r-1", holder_jurisdiction="110000")
    )
    batch = common_pb2.ColumnBatch(
        row_count=2, columns=[common_pb2.Column(name="person_id", values=["p1", "p2"])]
    )
    yield service_pb2.StreamRecordsResponse(
        chunk=service_pb2.RecordChunk(index=0, columns=batch, cursor="cursor-after-0")
    )
    if completed:
        yield service_pb2.StreamRecordsResponse(
            completed=service_pb2.StreamCompleted(row_count=2, chunk_count=1, commitment="ab" * 32)
        )


@pytest.fixture
def argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    cert = tmp_path / "tls.crt"
    cert.write_bytes(make_tls_identity("gw-120000", ["localhost"]).cert_pem)
    token = tmp_path / "t.token"
    token.write_text("svc_x\n")
    return ["call", "bulk", "--address", "127.0.0.1:1", "--cert", str(cert),
            "--jurisdiction", "120000", "--token-file", str(token), "--holder", "110000",
            "--dataset", "si_contributions", "--purpose", "commuter_planning"]  # fmt: skip


def _stream(monkeypatch: pytest.MonkeyPatch, completed: bool) -> None:
    def fake(self: ServiceClient, *a: Any, **kw: Any) -> Iterator[Any]:
        return _messages(completed)

    monkeypatch.setattr(ServiceClient, "stream_records", fake)


def test_bulk_extract_file_is_readable_by_its_owner_only(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stream(monkeypatch, completed=True)
    out = tmp_path / "extract.jsonl"
    old = os.umask(0o022)
    try:
        assert main([*argv, "--out", str(out)]) == 0
    finally:
        os.umask(old)
    assert len(out.read_text().splitlines()) == 2
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_bulk_usage_mistake_leaves_an_earlier_extract_untouched(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "extract.jsonl"
    out.write_text('{"person_id": "p0"}\n')
    argv = [a if a != str(tmp_path / "t.token") else str(tmp_path / "missing.token") for a in argv]
    assert main([*argv, "--out", str(out)]) == 2
    assert "missing.token" in capsys.readouterr().err
    assert out.read_text() == '{"person_id": "p0"}\n'


def test_bulk_stream_that_stops_without_the_holders_completion_is_not_reported_complete(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _stream(monkeypatch, completed=False)
    out = tmp_path / "extract.jsonl"
    assert main([*argv, "--out", str(out), "--json"]) == 3
    err = capsys.readouterr().err
    assert "without the holder's completion" in err and "not complete" in err
    assert "--cursor cursor-after-0" in err
    assert '"complete"' not in err
