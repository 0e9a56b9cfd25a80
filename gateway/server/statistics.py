"""Statistics wiring of one gateway: holder, coordinator, peer handler, reloads.

Owns: building the statistics holder from ``statistics.yaml`` (refusing a
declared privacy unit the source does not enforce), keeping it in step with
policy reloads, the coordinator's fan-out (this gateway's own part is answered
locally, others over the signed peer protocol) and the peer handler for
``PeerExchange.ComputeStatistic``.

Does not own: any statistics (``gateway.stats``), envelopes
(``gateway.exchange.peer``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from gateway import crypto, domains, identifiers
from gateway._proto.dataexchange.gateway.v1 import peer_pb2, stats_pb2
from gateway.envelope import envelope_digest, make_header, new_request_id
from gateway.errors import GatewayError, NotFound, PolicyFileError, status_name
from gateway.exchange.peer import PeerCaller, PeerRequest, PeerResponder
from gateway.ledger.events import LedgerEvent, LedgerWriter, clean_reason, safe_identifier
from gateway.limits import Limits
from gateway.policy.store import PolicyStore, ReloadResult
from gateway.sources import DataSource
from gateway.stats.agreements import STATISTICS_FILE, StatisticsPolicy
from gateway.stats.budget import BudgetStore
from gateway.stats.coordinator import HolderReply, StatsCoordinator
from gateway.stats.holder import StatsHolder
from gateway.trust import TrustBundle

log = logging.getLogger("gateway.stats")


class StatisticsWiring:
    def __init__(
        self,
        me: str,
        policies: Path,
        budget: BudgetStore,
        policy_store: PolicyStore,
        source: DataSource,
        ledger: LedgerWriter,
        caller: PeerCaller,
        responder: PeerResponder,
        bundle: Callable[[], TrustBundle],
        clock_ms: Callable[[], int],
        limits: Limits,
        acknowledge: Callable[[str, str, str, str], None] | None = None,
    ) -> None:
        self.me = me
        self._ledger = ledger
        self._limits = limits
        self._policies = policies
        self._policy_store = policy_store
        self._source = source
        self._caller = caller
        self._responder = responder
        self._bundle = bundle
        self._clock = clock_ms
        self.budget = budget
        self.holder: StatsHolder | None = None
        if (policies / STATISTICS_FILE).is_file():
            policy = StatisticsPolicy.from_dir(policies, policy_store.current.catalogue, limits)
            self._check_declared_privacy_units(policy)
            self.holder = StatsHolder(
                policy=policy,
                source=source,
                budget=self.budget,
                ledger=ledger,
                limits=limits,
                policy_set_digest=lambda: policy_store.current.digest,
                suite=caller.suite,
            )
            policy_store.subscribe(self._reload)
        self.coordinator = StatsCoordinator(
            local_jurisdiction=me,
            fan_out=self.fan_out,
            ledger=ledger,
            limits=limits,
            clock_ms=clock_ms,
            acknowledge=acknowledge,
            suite=caller.suite,
        )

    def _check_declared_privacy_units(self, policy: StatisticsPolicy) -> None:
        """``truncate_by_identifier: false`` trusts the source to hold at most one
        row per person; refuse it unless the source enforces that (UNIQUE index)."""
        catalogue = self._policy_store.current.catalogue
        for terms in policy.agreement.datasets:
            if terms.truncate_by_identifier:
                continue
            dataset = catalogue.dataset(terms.dataset)
            unit = dataset.privacy_unit
            if (
                unit is None
                or unit.max_rows != 1
                or not self._source.guarantees_unique(dataset, unit.column)
            ):
                raise PolicyFileError(
                    f"{self._policies / STATISTICS_FILE}: dataset {terms.dataset} sets "
                    "truncate_by_identifier: false, but the data source does not guarantee one row "
                    f"per {unit.column if unit else 'person'} (needs privacy_unit.max_rows: 1 and a "
                    "UNIQUE index on that column); set truncate_by_identifier: true"
                )

    def _reload(self, result: ReloadResult) -> None:
        if self.holder is None or not result.ok:
            return
        try:
            fresh = StatisticsPolicy.from_dir(
                self._policies, self._policy_store.current.catalogue, self._limits
            )
            self._check_declared_privacy_units(fresh)
        except GatewayError as exc:
            log.warning("statistics agreement reload refused; keeping the one in force: %s", exc)
            return
        self.holder.replace_policy(fresh)

    def fan_out(
        self, holder: str, request: stats_pb2.PeerStatsRequest
    ) -> stats_pb2.PeerStatsResponse | HolderReply:
        """One holder's part of a federated statistic (local or over mTLS)."""
        msg = stats_pb2.PeerStatsRequest()
        msg.CopyFrom(request)  # shared across holders; each call writes its own header
        rid = request.header.request_id or new_request_id()  # the coordinator's, if it chose
        if holder == self.me:
            if self.holder is None:
                raise NotFound(f"jurisdiction {self.me} answers no statistics queries")
            resp = self.holder.handle_peer(
                msg, requester=self.me, request_id=rid, now_ms=self._clock()
            )
            resp.header.CopyFrom(
                make_header(self.me, self.me, rid, self._clock(), self._bundle().version)
            )
            return resp
        envelope = self._caller.prepare(holder, msg, domains.PEER_STATS_REQUEST, rid)
        reply = self._caller.send(
            holder,
            "ComputeStatistic",
            envelope,
            rid,
            domains.PEER_STATS_RESPONSE,
            stats_pb2.PeerStatsResponse,
        )
        return HolderReply(
            reply.response,
            requester_signature=crypto.b64(reply.request_envelope.signature),
            holder_signature=crypto.b64(reply.response_envelope.signature),
            request_digest=envelope_digest(reply.request_envelope, self._caller.suite).hex(),
            response_digest=envelope_digest(reply.response_envelope, self._caller.suite).hex(),
        )

    def handle_peer(
        self, envelope: peer_pb2.SignedEnvelope, tls_identity: str
    ) -> peer_pb2.SignedEnvelope:
        # Authenticated first: from here every outcome is on this ledger.
        request = self._responder.open(
            envelope, domains.PEER_STATS_REQUEST, stats_pb2.PeerStatsRequest, tls_identity
        )
        if self.holder is None:
            refused = NotFound(
                f"jurisdiction {self.me} answers no statistics queries (no statistics agreement)"
            )
            if not request.message.dry_run:
                self._ledger.append(
                    unanswerable_event(
                        request,
                        self.me,
                        self._clock(),
                        self._policy_store.current.digest,
                        refused,
                        self._limits,
                    )
                )
            raise refused
        signed: list[peer_pb2.SignedEnvelope] = []

        def sign(response: stats_pb2.PeerStatsResponse) -> tuple[str, str]:
            out = self._responder.respond(request, response, domains.PEER_STATS_RESPONSE)
            signed.append(out)
            return crypto.b64(out.signature), envelope_digest(out, self._caller.suite).hex()

        response = self.holder.handle_peer(
            request.message,
            requester=request.sender,
            request_id=request.request_id,
            now_ms=self._clock(),
            requester_signature_b64=request.signature_b64,
            request_digest_hex=request.digest_hex,
            sign=sign,
        )
        if signed:  # a release: signed, then ledgered, now released
            return signed[-1]
        return self._responder.respond(request, response, domains.PEER_STATS_RESPONSE)

    def close(self) -> None:
        self.coordinator.close()


def unanswerable_event(
    request: PeerRequest[stats_pb2.PeerStatsRequest],
    me: str,
    now_ms: int,
    policy_set_digest: str,
    refused: GatewayError,
    limits: Limits,
) -> LedgerEvent:
    """The holder's entry for an authenticated statistics request it cannot answer at all."""
    msg = request.message
    return LedgerEvent(
        kind="stats_refusal",
        role="holder",
        request_id=request.request_id,
        timestamp_ms=now_ms,
        local=me,
        counterparty=request.sender,
        service_system=safe_identifier(msg.service_system, identifiers.is_service_system),
        dataset=safe_identifier(msg.query.dataset, identifiers.is_code),
        purpose=safe_identifier(msg.query.purpose, identifiers.is_purpose),
        decision="deny",
        reason=clean_reason(refused.message, limits),
        policy_set_digest=policy_set_digest,
        request_digest=request.digest_hex,
        requester_signature=request.signature_b64,
        details=(("error_code", status_name(refused)),),
    )
