"""A service system's client for its local gateway (Python convenience).

Owns: opening a TLS channel to the gateway's service port (trusting the
gateway's certificate), sending the bearer token as call metadata
(``authorization: Bearer <token>`` on every call, exactly what a Java, Go or
Node client sends), and typed methods for the service-system API: records, datasets,
statistics and statistics dry runs. Other languages need only ``protos/`` and
the same two things: the gateway's certificate and a token (see README
"Calling the gateway from a service system").

Errors come back as ``grpc.RpcError`` with the status codes the README lists
(``INVALID_ARGUMENT`` naming the field, ``PERMISSION_DENIED`` with the
holder's reason, ``RESOURCE_EXHAUSTED`` with the budget left, ...).

Example::

    from gateway.client import ServiceClient

    with ServiceClient("gw.hb.example:7201", Path("gateway-tls.crt"), "130000", token) as gw:
        reply = gw.get_records(
            holder_jurisdiction="110000",
            dataset="si_contributions",
            purpose="housing_fund_transfer",
            subject_ids=["110105199003078515"],
        )
        stats = gw.query_statistics(
            ["110000", "120000"], "si_contributions", "commuter_planning", "count",
            epsilon=0.5, group_by=["age_band"],
        )
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from gateway._proto.dataexchange.gateway.v1 import (
    service_pb2,
    service_pb2_grpc,
    stats_pb2,
    stats_pb2_grpc,
    subject_pb2,
    subject_pb2_grpc,
)
from gateway.identity import tls_server_name

STATISTICS: tuple[str, ...] = ("count", "sum", "mean", "quantile", "median", "histogram")


class _CallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, base: Any, metadata: tuple[tuple[str, str], ...]) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


class _BearerMetadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds ``authorization: Bearer <token>`` to each call's metadata, in the
    caller's thread (a credentials plugin runs on a gRPC thread for every call:
    0.2 ms of CPU per exchange in the exchange benchmark)."""

    def __init__(self, token: str) -> None:
        self._md = (("authorization", f"Bearer {token}"),)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_CallDetails(details, (*(details.metadata or ()), *self._md)), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(_CallDetails(details, (*(details.metadata or ()), *self._md)), request)


def service_channel(
    address: str, gateway_cert_pem: bytes, jurisdiction: str, token: str | None
) -> grpc.Channel:
    """A TLS channel to a gateway's service port.

    ``jurisdiction`` gives the TLS server name (``gw-<code>``) the gateway's
    certificate is issued for. With ``token``, every unary call on the channel
    carries the call metadata ``authorization: Bearer <token>`` (added by a
    client interceptor in the caller's thread; the channel is TLS).
    """
    creds = grpc.ssl_channel_credentials(root_certificates=gateway_cert_pem)
    channel = grpc.secure_channel(
        address, creds, options=[("grpc.ssl_target_name_override", tls_server_name(jurisdiction))]
    )
    if token is None:
        return channel
    return grpc.intercept_channel(channel, _BearerMetadata(token))


def statistic_kind(name: str | int) -> int:
    """``"count"`` (or ``stats_pb2.STATISTIC_KIND_COUNT``) -> the enum value."""
    if isinstance(name, int):
        return name
    key = name.strip().lower()
    if key not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}; got {name!r}")
    return int(stats_pb2.StatisticKind.Value(f"STATISTIC_KIND_{key.upper()}"))


def stats_request(
    jurisdictions: Sequence[str],
    dataset: str,
    purpose: str,
    statistic: str | int,
    *,
    epsilon: float,
    confidence: float = 0.95,
    column: str = "",
    group_by: Sequence[str] = (),
    filters: Mapping[str, Sequence[str]] | None = None,
    quantile: float = 0.0,
    candidates: Sequence[float] = (),
    bin_edges: Sequence[float] = (),
    client_reference: str = "",
) -> stats_pb2.StatsQueryRequest:
    """Build a ``StatsQueryRequest`` (see ``protos/.../stats.proto`` for every field).

    ``filters`` maps a column to the values kept (values OR-ed, columns AND-ed),
    e.g. ``{"residence_jurisdiction": ["130000"]}``.
    """
    return stats_pb2.StatsQueryRequest(
        jurisdictions=list(jurisdictions),
        client_reference=client_reference,
        query=stats_pb2.StatsQuery(
            dataset=dataset,
            purpose=purpose,
            statistic=statistic_kind(statistic),  # type: ignore[arg-type]
            column=column,
            group_by=list(group_by),
            filters=[
                stats_pb2.StatsFilter(column=c, values=list(v)) for c, v in (filters or {}).items()
            ],
            epsilon=epsilon,
            confidence=confidence,
            quantile=quantile,
            candidates=list(candidates),
            bin_edges=list(bin_edges),
        ),
    )


class ServiceClient:
    """A registered service system's connection to its own gateway.

    ``address`` is the gateway's service port (``host:port``), ``gateway_cert``
    its TLS certificate (a path or PEM bytes) to trust, ``jurisdiction`` the
    gateway's own code (for the TLS server name) and ``token`` the bearer
    token its bureau issued (``gateway service-system add --token``); ``None``
    for a client-certificate port or an unauthenticated call such as health.
    Use as a context manager, or call ``close()``.
    """

    def __init__(
        self, address: str, gateway_cert: Path | bytes, jurisdiction: str, token: str | None
    ) -> None:
        pem = gateway_cert.read_bytes() if isinstance(gateway_cert, Path) else gateway_cert
        # The token rides on every call as ``authorization: Bearer`` metadata
        # (call credentials on the channel, so ``self.channel`` is usable as is).
        self.channel = service_channel(address, pem, jurisdiction, token)
        self.records = service_pb2_grpc.RecordExchangeStub(self.channel)
        self.statistics = stats_pb2_grpc.StatisticsStub(self.channel)
        self.subject_access = subject_pb2_grpc.SubjectAccessStub(self.channel)

    # -- records --------------------------------------------------------------

    def get_records(self, timeout: float = 15.0, **fields: Any) -> service_pb2.GetRecordsResponse:
        """Ask another jurisdiction for records (``RecordExchange.GetRecords``).

        ``fields`` are ``GetRecordsRequest``'s: ``holder_jurisdiction``,
        ``dataset``, ``purpose``, ``subject_ids`` (empty for a bulk read where
        the agreement allows one), optional ``fields`` and ``client_reference``.
        The reply carries the released (transformed) records, the holder's
        decision with its agreement id and digest, and this gateway's ledger
        receipt.
        """
        reply: service_pb2.GetRecordsResponse = self.records.GetRecords(
            service_pb2.GetRecordsRequest(**fields), timeout=timeout
        )
        return reply

    def list_datasets(self, timeout: float = 15.0) -> service_pb2.ListDatasetsResponse:
        """Every federation member and the datasets it offers (from the trust bundle)."""
        reply: service_pb2.ListDatasetsResponse = self.records.ListDatasets(
            service_pb2.ListDatasetsRequest(), timeout=timeout
        )
        return reply

    # -- statistics -----------------------------------------------------------

    def query_statistics(
        self,
        jurisdictions: Sequence[str],
        dataset: str,
        purpose: str,
        statistic: str | int,
        *,
        epsilon: float,
        confidence: float = 0.95,
        column: str = "",
        group_by: Sequence[str] = (),
        filters: Mapping[str, Sequence[str]] | None = None,
        quantile: float = 0.0,
        candidates: Sequence[float] = (),
        bin_edges: Sequence[float] = (),
        client_reference: str = "",
        dry_run: bool = False,
        timeout: float = 60.0,
    ) -> stats_pb2.StatsQueryResponse:
        """A differentially private statistic from one or more jurisdictions (``Statistics.Query``).

        Spends ``epsilon`` of this service system's budget at each holder that
        answers. With ``dry_run=True`` (``Statistics.DryRun``) each holder only
        checks its agreement and answers with the cost and expected accuracy
        (noise scale, interval half-widths): nothing is released or spent. ``statistic`` is one of ``count``, ``sum``, ``mean``,
        ``quantile``, ``median``, ``histogram``; ``column`` names the measured
        column (not for ``count``). The reply has one release per holder
        (``parts``, each with its mechanism, noise scale and confidence
        intervals), a ``combined`` release for counts and sums across holders,
        ``missing`` parts (refused or down) and the budget ``remaining``.
        """
        call = self.dry_run if dry_run else self.query
        return call(
            stats_request(
                jurisdictions,
                dataset,
                purpose,
                statistic,
                epsilon=epsilon,
                confidence=confidence,
                column=column,
                group_by=group_by,
                filters=filters,
                quantile=quantile,
                candidates=candidates,
                bin_edges=bin_edges,
                client_reference=client_reference,
            ),
            timeout=timeout,
        )

    def query(
        self, request: stats_pb2.StatsQueryRequest, timeout: float = 60.0
    ) -> stats_pb2.StatsQueryResponse:
        """``Statistics.Query`` with a ready-made request (see ``stats_request``)."""
        reply: stats_pb2.StatsQueryResponse = self.statistics.Query(request, timeout=timeout)
        return reply

    def dry_run(
        self, request: stats_pb2.StatsQueryRequest, timeout: float = 60.0
    ) -> stats_pb2.StatsQueryResponse:
        """``Statistics.DryRun`` with a ready-made request (see ``stats_request``)."""
        reply: stats_pb2.StatsQueryResponse = self.statistics.DryRun(request, timeout=timeout)
        return reply

    # -- lifecycle ------------------------------------------------------------

    # -- subject access -------------------------------------------------------

    def access_history(
        self, subject_id: str, jurisdictions: tuple[str, ...] = (), timeout: float = 30.0
    ) -> subject_pb2.AccessHistoryResponse:
        """A person's verified access history (a portal with the ``subject_access`` role)."""
        reply: subject_pb2.AccessHistoryResponse = self.subject_access.GetAccessHistory(
            subject_pb2.AccessHistoryRequest(
                subject_id=subject_id, jurisdictions=list(jurisdictions)
            ),
            timeout=timeout,
        )
        return reply

    def stream_records(
        self,
        holder_jurisdiction: str,
        dataset: str,
        purpose: str,
        fields: tuple[str, ...] = (),
        *,
        cursor: str = "",
        client_reference: str = "",
        timeout: float | None = None,
        columnar: bool = False,
        max_rows: int = 0,
    ) -> Iterator[service_pb2.StreamRecordsResponse]:
        """A streamed bulk transfer: ``started``, then ``chunk`` messages, then
        ``completed`` (only once the holder's commitment verified). Pass the last
        chunk's ``cursor`` to resume an interrupted transfer. Closing the iterator
        cancels the transfer. With ``columnar`` each chunk carries its rows as
        columns (``chunk.columns``), much cheaper at both ends than one Record per
        row; ``chunk_rows(chunk)`` gives the rows of either form. ``max_rows``
        (0: as many as the agreement allows) caps the transfer: one it ends is
        ``truncated`` and its cursor continues."""
        call = self.records.StreamRecords(
            service_pb2.StreamRecordsRequest(
                holder_jurisdiction=holder_jurisdiction,
                dataset=dataset,
                purpose=purpose,
                fields=fields,
                cursor=cursor,
                client_reference=client_reference,
                columnar=columnar,
                max_rows=max_rows,
            ),
            timeout=timeout,
        )
        try:
            yield from call
        finally:
            call.cancel()

    def close(self) -> None:
        """Close the channel (idempotent)."""
        self.channel.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chunk_rows(chunk: service_pb2.RecordChunk) -> Iterator[dict[str, str]]:
    """The rows of a streamed chunk, one dict each, whether it carries them as
    columns (``columnar=True``) or as one Record per row."""
    if chunk.columns.columns:
        names = [c.name for c in chunk.columns.columns]
        for values in zip(*(c.values for c in chunk.columns.columns), strict=True):
            yield dict(zip(names, values, strict=True))
    else:
        for record in chunk.records:
            yield dict(record.fields)


def chunk_row_count(chunk: service_pb2.RecordChunk) -> int:
    """How many rows a streamed chunk carries (either form)."""
    return chunk.columns.row_count if chunk.columns.columns else len(chunk.records)
