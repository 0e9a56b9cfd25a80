"""Wiring the operations surface into a running gateway.

Owns: building the scrape-time sources of ``GatewayMetrics`` from a gateway's
ledger, witness state, budget store and statistics agreement; the readiness
checks; starting the operations listener on ``[listen] ops``; and adding gRPC
server reflection (the services' descriptors only: what ``protos/`` already
publishes) to the service port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection

from gateway import crypto
from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, service_pb2, stats_pb2
from gateway.errors import ConfigurationError
from gateway.ledger.witness import witnessed_size
from gateway.ops.http import OpsListener
from gateway.ops.metrics import CONTENT_TYPE, BudgetFigure, StateSources
from gateway.ops.ready import (
    SourcesProbe,
    bundle_check,
    keys_check,
    own_certificate_check,
    policies_check,
    presents_retired,
    sources_check,
    storage_check,
)
from gateway.stats.budget import EPS_UNIT, Caps, requester_key

if TYPE_CHECKING:
    from gateway.server.app import Gateway

log = logging.getLogger("gateway.ops")

# What reflection lists on the service port (the peer port is members-only
# and its API is not for tooling).
REFLECTED_SERVICES: tuple[str, ...] = (
    service_pb2.DESCRIPTOR.services_by_name["RecordExchange"].full_name,
    stats_pb2.DESCRIPTOR.services_by_name["Statistics"].full_name,
    ledger_pb2.DESCRIPTOR.services_by_name["Ledger"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


def add_reflection(server: grpc.Server) -> None:
    reflection.enable_server_reflection(REFLECTED_SERVICES, server)


def budget_figures(gw: Gateway) -> Sequence[BudgetFigure]:
    holder = gw.statistics.holder
    if holder is None:
        return ()
    store = gw.statistics.budget
    out = []
    for terms in holder.policy.agreement.datasets:
        caps = Caps(terms.budget.epsilon_per_requester, terms.budget.epsilon_total)
        for r in terms.requesters:
            for system in r.service_systems:
                key = requester_key(r.jurisdiction, system)
                usage = store.usage(terms.dataset, key)
                mine, total = usage.remaining(caps)
                out.append(
                    BudgetFigure(
                        terms.dataset, key, min(mine, total), usage.requester_eps / EPS_UNIT
                    )
                )
    return out


def state_sources(gw: Gateway, sources_up: Callable[[], dict[str, bool]]) -> StateSources:
    mine = crypto.cert_fingerprint(gw.keys.tls.cert_pem)  # fixed for the process's life

    def newest_checkpoint() -> tuple[int, int] | None:
        latest = gw.ledger.latest_checkpoint()
        return (latest.issued_ms, latest.checkpoint.size) if latest else None

    def witnessed() -> dict[str, int]:
        return {
            m.jurisdiction: witnessed_size(gw.ledger, m.jurisdiction)
            for m in gw.bundle().members
            if m.jurisdiction != gw.me
        }

    return StateSources(
        # The stored size: on PostgreSQL other replicas append too.
        ledger_size=gw.ledger.store.size,
        newest_checkpoint=newest_checkpoint,
        entry_ms=lambda index: gw.ledger.entry(index).event.timestamp_ms,
        witnessed_sizes=witnessed,
        budgets=lambda: budget_figures(gw),
        store_rows=gw.stores.probe.rows,
        now_ms=gw.clock_ms,
        lease_held=gw.stores.lease.held,
        sources_up=sources_up,
        own_certificate_not_after_ms=int(
            crypto.cert_not_after(gw.keys.tls.cert_pem).timestamp() * 1000
        ),
        own_certificate_retired=lambda: presents_retired(mine, gw.bundle().member(gw.me)),
    )


def start_ops_listener(gw: Gateway) -> OpsListener | None:
    """Start ``/metrics``, ``/healthz``, ``/readyz`` unless ``[listen] ops = "off"``."""
    catalogue = lambda: gw.policy_store.current.catalogue  # noqa: E731
    probe = SourcesProbe(gw.source, catalogue, gw.served_datasets, gw.config.limits)
    gw.metrics.watch_state(state_sources(gw, probe.up))
    address = gw.config.listen.ops
    if address == "off":
        return None
    checks = [
        keys_check(gw.keys, gw.config.key_dir),
        bundle_check(gw.bundle, gw.clock_ms),
        own_certificate_check(
            gw.keys.tls.cert_pem, gw.bundle, gw.me, gw.clock_ms, gw.config.limits
        ),
        policies_check(catalogue, gw.served_datasets),
        storage_check(gw.stores.probe),
        sources_check(probe),
    ]
    try:
        listener = OpsListener(
            address, gw.metrics.exposition, checks, CONTENT_TYPE, gw.config.limits
        ).start()
    except OSError as exc:
        if "ops" in gw.config.listen.model_fields_set:  # the operator asked for this address
            raise ConfigurationError(
                f"[listen] ops = {address!r}: cannot listen there: {exc.strerror or exc}"
            ) from exc
        # The default address is taken (say, a second gateway on this host): keep
        # serving exchanges, say loudly that /metrics is not there.
        log.error(
            "operations listener not started: the default %s is taken (%s); set "
            '[listen] ops to a free address, or "off"',
            address,
            exc.strerror or exc,
            extra={"event": "ops_not_listening"},
        )
        return None
    log.info(
        "operations listener on %s (/metrics /healthz /readyz)",
        address,
        extra={"event": "ops_listening", "port": listener.port},
    )
    return listener
