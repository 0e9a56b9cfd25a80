"""Assemble one gateway from its config and run its two gRPC servers.

Owns: wiring (keys, trust bundle, policy store, data source, ledger, replay
store, statistics, transport) and the lifecycle of the peer server (mutual
TLS, members only) and the service server (TLS, registered service systems),
both serving the standard gRPC health service. Reloads the trust bundle and
policies on file change or SIGHUP.

Does not own: any decision; everything here is plumbing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from gateway import crypto
from gateway._proto.dataexchange.gateway.v1 import (
    peer_pb2_grpc,
    service_pb2_grpc,
    stats_pb2_grpc,
    subject_pb2_grpc,
)
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigurationError, GatewayError, StorageFailure, TrustBundleRejected
from gateway.exchange.bulk_holder import BulkHolder
from gateway.exchange.bulk_requester import BulkRequester
from gateway.exchange.holder import RecordHolder
from gateway.exchange.peer import PeerCaller, PeerResponder
from gateway.exchange.receipts import Answered, ReceiptAcceptor, ReceiptSender
from gateway.exchange.requester import RecordRequester
from gateway.identity import (
    GatewayKeys,
    SealKeys,
    load_keys,
    load_retired_seal_keys,
    service_ca_cert,
)
from gateway.ledger.ledger import Ledger
from gateway.ledger.note import open_checkpoint
from gateway.limits import Limits
from gateway.ops.http import OpsListener
from gateway.ops.metrics import GatewayMetrics, KnownLabels
from gateway.ops.observe import ObservedLedger, ObservedTransport, ObservingWrapper, annotating
from gateway.ops.ready import own_certificate_status
from gateway.ops.spent import (
    COVER_FILE,
    POSTGRES_HINT,
    QUOTA_STARTUP_HINT,
    SQLITE_HINT,
    refuse_shortfalls,
    settle_open_reservations,
    startup_shortfalls,
)
from gateway.ops.wiring import add_reflection, start_ops_listener
from gateway.policy.engine import PolicyEngine
from gateway.policy.store import PolicyStore, PolicyWatcher
from gateway.sealing import SealSessions
from gateway.server.access import ServiceRegistry, authorize_peer
from gateway.server.auth import PeerAuthenticator
from gateway.server.interceptor import (
    GatewayServer,
    HandlerWrapper,
    caller,
    caller_from_context,
)
from gateway.server.servicers.ledger import AuditScope, MemberScope
from gateway.server.servicers.ledger import add_to_server as add_ledger_service
from gateway.server.servicers.peer import PeerExchangeServicer
from gateway.server.servicers.records import RecordExchangeServicer
from gateway.server.servicers.statistics import StatisticsServicer
from gateway.server.servicers.subject import SubjectAccessServicer
from gateway.server.statistics import StatisticsWiring
from gateway.server.transport import GrpcPeerTransport, channel_options
from gateway.server.witnessing import LedgerTimer, Witnessing
from gateway.sources import Sources
from gateway.storage.backend import Stores, open_stores
from gateway.subject.holder import HistoryResponder, SubjectHolder
from gateway.subject.index import index_key
from gateway.subject.indexer import SubjectIndexer
from gateway.subject.requester import SubjectAccessCoordinator
from gateway.trust import (
    TrustBundle,
    accept_bundle,
    bundle_expired,
    load_bundle,
    read_authority_key,
)

log = logging.getLogger("gateway")


def _close_quietly(close: Callable[[], None], what: str) -> None:
    """Close one part after a failed start; a failure here is logged, never
    raised over the reason the gateway did not start."""
    try:
        close()
    except Exception:
        log.warning("closing %s after a failed start failed", what, exc_info=True)


def system_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class BoundPorts:
    peer: int
    service: int
    service_mtls: int = 0
    ops: int = 0


class Gateway:
    """One jurisdiction's gateway. ``start()`` binds both ports; ``stop()`` ends."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        clock_ms: Callable[[], int] = system_clock_ms,
        rng: crypto.Rng = os.urandom,
    ) -> None:
        self.config = config
        self.me = config.jurisdiction
        limits = config.limits
        self._clock = clock_ms
        self.clock_ms = clock_ms
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.keys: GatewayKeys = load_keys(config.key_dir, limits=limits)
        if self.keys.jurisdiction != self.me:
            raise ConfigurationError(
                f"keys in {config.key_dir} are for {self.keys.jurisdiction}, config says {self.me}"
            )
        self._authority = read_authority_key(config.authority_key, limits)
        # A refusal to start (start-up checks, a bad bundle) must not leak what was
        # opened before it: on PostgreSQL a connection pool per attempt.
        with contextlib.ExitStack() as opened:
            # Every stateful part: SQLite files in data_dir, or a PostgreSQL
            # database shared with this gateway's other replicas ([storage] url).
            self.stores: Stores = open_stores(config)
            opened.callback(_close_quietly, self.stores.close, "the stores")
            log.info("gateway %s state: %s", self.me, self.stores.description)
            self._versions = self.stores.versions
            self._bundle_lock = threading.Lock()
            self._bundle = self._load_bundle()
            # A gm bundle may name the SM2 signer id of every member key's Z value.
            self.keys = self.keys.with_sm2_user_id(self._bundle.sm2_user_id)

            self.policy_store = PolicyStore(config.policies, limits=limits)
            if self.policy_store.current.catalogue.holder != self.me:
                raise ConfigurationError(
                    f"policies in {config.policies} are for holder "
                    f"{self.policy_store.current.catalogue.holder}, this gateway is {self.me}"
                )
            self.quota = self.stores.quota
            self.policy = PolicyEngine(
                self.policy_store,
                self.quota,
                self.keys.pseudonym_key,
                clock=clock_ms,
                limits=limits,
                suite=self.keys.suite,
            )
            self.source = Sources(config.data_source, self.policy_store.current.catalogue, limits)
            opened.callback(_close_quietly, self.source.close, "the data sources")
            self.ledger = open_ledger(
                config, self.stores, self.keys, self._bundle.member(self.me).origin, clock_ms
            )
            self._check_ledger_signer()
            # Metrics and the per-RPC log line see every ledger append and peer call.
            self.metrics = GatewayMetrics(
                self.me,
                KnownLabels(lambda: ((m.jurisdiction, m.datasets) for m in self._bundle.members)),
            )
            observed_ledger = ObservedLedger(self.ledger, self.metrics)
            self.replay = self.stores.replay
            self.transport = GrpcPeerTransport(self.keys.tls, limits, wall_ms=lambda: self._clock())
            opened.callback(_close_quietly, self.transport.close, "the peer transport")
            self.seal_keys = SealKeys(
                self.keys.seal,
                load_retired_seal_keys(config.key_dir, limits=limits),
                config.key_dir,
                limits,
            )
            self.caller = PeerCaller(
                self.me,
                self.keys.signing,
                self.bundle,
                ObservedTransport(self.transport, self.metrics),
                clock_ms,
                limits,
            )
            self.responder = PeerResponder(
                self.me, self.keys.signing, self.bundle, self.replay, clock_ms, limits
            )
            # One set of sealing sessions for both roles (gateway.sealing).
            self.sealing = SealSessions(self.seal_keys, limits, rng=rng)
            # Signed receipts for answers this gateway received, sent off the request path.
            self.receipts = ReceiptSender(self.caller, self.keys.signing, limits=limits)
            self.requester = RecordRequester(
                self.caller,
                self.bundle,
                observed_ledger,
                self.seal_keys,
                clock_ms,
                limits,
                rng,
                sessions=self.sealing,
                acknowledge=self.receipts.acknowledge,
            )
            self.receipt_acceptor = ReceiptAcceptor(
                self.me,
                self.responder,
                self.bundle,
                observed_ledger,
                lambda ids: {
                    rid: [r.event for r in found]
                    for rid, found in self.ledger.find_many(ids).items()
                },
                clock_ms,
                limits,
            )
            # Subject access: holder entries commit to whom they concern (blind indexes).
            # Shared by replicas on PostgreSQL, like the ledger it indexes.
            self.subject_store = self.stores.subject
            subject_key = index_key(self.keys.pseudonym_key)
            self.indexer = SubjectIndexer(observed_ledger, self.subject_store, subject_key, limits)
            self.history = HistoryResponder(
                self.ledger,
                self.subject_store,
                subject_key,
                limits,
                legal_basis=self._agreement_legal_basis,
            )
            self.holder = RecordHolder(
                self.responder,
                self.bundle,
                lambda: self.policy_store.current.catalogue,
                self.served_datasets,
                self.policy,
                self.source,
                observed_ledger,
                self.seal_keys,
                clock_ms,
                limits,
                rng,
                indexer=self.indexer,
                sessions=self.sealing,
            )
            catalogue = lambda: self.policy_store.current.catalogue  # noqa: E731
            self.subject_holder = SubjectHolder(
                self.responder,
                self.history,
                self.bundle,
                catalogue,
                observed_ledger,
                self.seal_keys,
                clock_ms,
                limits,
                rng,
            )
            self.subject_access = SubjectAccessCoordinator(
                self.caller,
                self.bundle,
                observed_ledger,
                self.seal_keys,
                self.history,
                catalogue,
                clock_ms,
                limits,
                rng,
            )
            self.bulk_requester = BulkRequester(
                self.caller,
                self.transport,
                self.bundle,
                self.ledger,
                self.seal_keys,
                clock_ms,
                limits,
            )
            self.bulk_holder = BulkHolder(
                self.holder,
                self.responder,
                self.bundle,
                lambda: self.policy_store.current.catalogue,
                self.policy,
                self.source,
                self.ledger,
                clock_ms,
                limits,
                rng,
            )
            self.service_auth = ServiceRegistry(
                config.service_systems, config.config_path, clock_ms=clock_ms, limits=limits
            )
            self.witness_store = self.stores.witness
            self.witnessing = Witnessing(
                self.me,
                self.keys,
                self.bundle,
                self.ledger,
                self.caller,
                self.responder,
                self.witness_store,
                clock_ms,
                limits,
            )
            self._timer: LedgerTimer | None = None
            self.statistics = StatisticsWiring(
                self.me,
                config.policies,
                self.stores.budget,
                self.policy_store,
                self.source,
                self.indexer,
                self.caller,
                self.responder,
                self.bundle,
                clock_ms,
                limits,
                acknowledge=lambda holder, rid, req, resp: self.receipts.acknowledge(
                    Answered(holder, rid, bytes.fromhex(req), bytes.fromhex(resp))
                ),
            )
            # Budgets or quotas copied back by hand must not reopen what the ledger
            # shows as already spent (``gateway restore`` checks the same rule).
            refuse_shortfalls(
                startup_shortfalls(
                    self.stores.ledger,
                    self.stores.spends,
                    self.stores.quota,
                    config.data_dir / COVER_FILE,
                    self.me,
                    clock_ms(),
                    limits,
                ),
                f"gateway {self.me} refuses to start",
                POSTGRES_HINT if self.stores.shared else SQLITE_HINT,
                QUOTA_STARTUP_HINT,
            )
            # Spends left ``reserved`` (a settle that failed, a process stopped
            # mid-request) are labelled from the ledger; they stay counted.
            settled = settle_open_reservations(
                self.stores.ledger, self.me, self.stores.budget, clock_ms(), limits
            )
            if settled.released or settled.failed:
                log.warning(
                    "privacy budget: reservations left open by earlier requests settled "
                    "from the ledger: %s (all stay counted as spent)",
                    settled,
                )
            self._stopping = threading.Event()
            self._peer_server: grpc.Server | None = None
            self._service_server: grpc.Server | None = None
            self._health = health.HealthServicer()
            self._watcher: PolicyWatcher | None = None
            self._ops: OpsListener | None = None
            self.ports: BoundPorts | None = None
            opened.pop_all()  # started: from now on stop() closes them

    # ------------------------------------------------------------------
    # Trust bundle
    # ------------------------------------------------------------------

    def bundle(self) -> TrustBundle:
        return self._bundle

    def _load_bundle(self) -> TrustBundle:
        now = dt.datetime.fromtimestamp(self._clock() / 1000, dt.UTC)
        bundle = load_bundle(
            self.config.trust_bundle,
            self._authority,
            now=now,
            min_version=self._versions.highest(),
            limits=self.config.limits,
        )
        me = bundle.member(self.me)
        if bundle.suite != self.keys.suite.name:
            raise ConfigurationError(
                f"the trust bundle is for suite {bundle.suite} but this gateway's keys are "
                f"suite {self.keys.suite.name}"
            )
        in_force: TrustBundle | None = getattr(self, "_bundle", None)  # None at start-up
        if in_force is not None and bundle.sm2_user_id != in_force.sm2_user_id:
            raise TrustBundleRejected(
                "the new trust bundle changes the SM2 user id; restart the gateway to adopt it"
            )
        # Each of our keys must be one the bundle lists for us as valid now
        # (the current one, or during a rotation's overlap the retired one).
        for kind, key in (
            ("envelope", self.keys.signing.verify_key),
            ("ledger", self.keys.ledger.verify_key),
            ("witness", self.keys.cosigner.verify_key),
        ):
            if not me.ring(kind).contains(key, now):  # type: ignore[arg-type]
                raise ConfigurationError(
                    f"the trust bundle lists no {kind} key of {self.me} valid now that is this "
                    "gateway's key (rotated keys? ask the authority for `federation rotate-keys`)"
                )
        # At start-up the certificate read from the key folder must be one the
        # bundle vouches for now. A running gateway adopts a newer bundle that
        # no longer does (its TLS key rotated on disk, not restarted, and the
        # overlap over): staying on the old bundle would keep trusting what the
        # authority has since changed, while peers refuse the old certificate
        # either way. /readyz, the log and gateway_own_certificate_retired say
        # to restart (``gateway.ops.ready.own_certificate_status``).
        mine = crypto.cert_fingerprint(self.keys.tls.cert_pem)
        if in_force is None and not any(
            crypto.digest_equal(fp, mine) for _, fp in me.tls_certs_at(now)
        ):
            raise ConfigurationError(
                f"the trust bundle's TLS certificate for {self.me} is not this gateway's certificate"
            )
        accept_bundle(bundle, self._versions)
        return bundle

    def _check_ledger_signer(self) -> None:
        """Refuse to start on a ledger whose last checkpoint was signed by a key
        the trust bundle does not list for us at the time it was issued."""
        latest = self.ledger.store.latest_checkpoint()
        if latest is None:
            return
        keys = self._bundle.keys_valid_at(self.me, "ledger", latest.issued_ms)
        try:
            open_checkpoint(latest.note, self.ledger.origin, keys, self.config.limits)
        except GatewayError as exc:
            raise ConfigurationError(
                f"{self.stores.description}: the ledger's last checkpoint (#{latest.seq}, "
                f"size {latest.size}) was signed by a ledger key the trust bundle does not list "
                f"for {self.me} at the time it was issued ({exc}); after rotating the ledger "
                "key, the authority must list the old one (`gateway federation rotate-keys`)"
            ) from exc

    def _bundle_stamp(self) -> tuple[int, int]:
        try:
            st = self.config.trust_bundle.stat()
        except OSError:
            return (-1, -1)
        return (st.st_mtime_ns, st.st_size)

    def _watch_bundle(self) -> None:
        """Pick up a newly distributed trust bundle (members joining or leaving),
        and say once when the one in force expires (peer exchanges are refused
        from then on, ``gateway.exchange.peer``), and once when this gateway's own
        TLS certificate nears its expiry or is the retired one of a rotation
        (``gateway.ops.ready.own_certificate_status``)."""
        stamp = self._bundle_stamp()
        expired_logged = ""  # digest of the bundle whose expiry was logged
        certificate_logged = ""  # what was last said about our own certificate
        while not self._stopping.wait(1.0):
            certificate_logged = self._log_own_certificate(certificate_logged)
            now = self._bundle_stamp()
            if now != stamp:
                stamp = now
                if self.reload_bundle():
                    log.info("trust bundle version %s now in force", self._bundle.version)
            bundle = self._bundle
            if bundle.digest != expired_logged:
                problem = bundle_expired(
                    bundle, dt.datetime.fromtimestamp(self._clock() / 1000, dt.UTC)
                )
                if problem is not None:
                    expired_logged = bundle.digest
                    log.error(
                        "%s; until then every peer exchange, both ways, is refused",
                        problem,
                        extra={"event": "trust_bundle_expired", "bundle_version": bundle.version},
                    )

    def _log_own_certificate(self, logged: str) -> str:
        """One log line each time what there is to say about the TLS certificate
        this process presents changes (a warning, or an error once peers refuse
        it); returns what was said."""
        bundle = self._bundle
        try:
            status = own_certificate_status(
                self.keys.tls.cert_pem,
                bundle.member(self.me),
                dt.datetime.fromtimestamp(self._clock() / 1000, dt.UTC),
                self.config.limits,
                bundle=bundle,
            )
        except GatewayError as exc:
            log.debug("own certificate not checked: %s", exc)
            return logged
        said = status.problem or status.warning or ""
        if said and said != logged:
            log.log(
                logging.ERROR if status.problem else logging.WARNING,
                "%s",
                said,
                extra={
                    "event": "own_certificate",
                    "expires_in_days": int(status.seconds_left // 86_400),
                    "retired": status.retired,
                },
            )
        return said

    def reload_bundle(self) -> bool:
        """Load a newer bundle if one is there; keep the current one on any problem."""
        with self._bundle_lock:
            try:
                new = self._load_bundle()
            except Exception as exc:  # keep serving with the bundle in force
                log.warning(
                    "trust bundle reload refused; keeping version %s: %s", self._bundle.version, exc
                )
                return False
            changed = new.digest != self._bundle.digest
            self._bundle = new
            if changed:
                self._adopt(new)
            return changed

    def _adopt(self, bundle: TrustBundle) -> None:
        """What follows a new bundle: outbound channels trusting certificates it
        no longer lists are closed, and a sealing key of ours it lists that is not
        in memory (a rotation on disk; peers on this bundle seal to it) is read."""
        self.transport.refresh(bundle)
        held = {k.public_key.raw for k in self.seal_keys.keys}
        listed = bundle.member(self.me).seal_keys_at(
            dt.datetime.fromtimestamp(self._clock() / 1000, dt.UTC)
        )
        if any(k.raw not in held for k in listed):
            self.seal_keys.reload()

    def reload_all(self) -> None:
        """SIGHUP: reload policies, the trust bundle and the sealing keys, keeping
        what is in force on error."""
        result = self.policy_store.reload("SIGHUP")
        if not result.ok:
            log.warning("policy reload refused: %s", result.error)
        self.reload_bundle()
        self.reload_service_systems()
        self.seal_keys.reload()  # a sealing key rotated on disk
        log.info(
            "SIGHUP: reload done (policies %s, trust bundle version %s)",
            "reloaded" if result.ok else "kept",
            self._bundle.version,
            extra={
                "event": "sighup",
                "outcome": "ok" if result.ok else "policies kept",
                "bundle_version": self._bundle.version,
                "service_systems": len(self.service_auth.systems),
            },
        )

    def reload_service_systems(self) -> None:
        """Re-read the registered service systems from the config file (also
        done on the first call after the file changes)."""
        self.service_auth.reload()

    def checkpoint_and_witness(self) -> dict[str, str]:
        """Issue a checkpoint now and have every peer cosign it (SIGUSR1).

        Only the replica holding the signing lease runs witness rounds."""
        if not self.stores.lease.held():
            log.warning("witness round skipped: another replica holds the signing lease")
            return {}
        outcomes = self.witnessing.round(force=True)
        log.info(
            "SIGUSR1: checkpoint at size %d, %d of %d peers cosigned",
            self.ledger.size,
            sum(o.startswith("cosigned") for o in outcomes.values()),
            len(outcomes),
            extra={"event": "sigusr1", "size": self.ledger.size, "peers": outcomes},
        )
        return outcomes

    def _agreement_legal_basis(self, agreement_id: str, digest: str) -> str:
        """The legal basis of the agreement file with that digest, if it is in force."""
        agreement = self.policy_store.current.by_id.get(agreement_id)
        if agreement is None or not crypto.digest_equal(agreement.digest, digest):
            return ""
        return str(agreement.spec.legal_basis)

    def served_datasets(self) -> tuple[str, ...]:
        codes = tuple(d.code for d in self.policy_store.current.catalogue.datasets)
        if self.config.datasets is None:
            return codes
        return tuple(c for c in self.config.datasets if c in codes)

    # ------------------------------------------------------------------
    # Servers
    # ------------------------------------------------------------------

    def _peer_credentials(self) -> grpc.ServerCredentials:
        """Mutual TLS of the peer port: the client certificates trusted are the
        members' certificates valid now. gRPC asks ``fetch`` before each new
        handshake; the trusted set is rebuilt when a new bundle is in force and
        when a rotation's overlap starts or ends (a retired certificate stops
        completing handshakes when its overlap ends, not at the next bundle).
        This gateway's own key and certificate are those it started with."""
        state: dict[str, Any] = {}  # the bundle digest and instant the config in force is for

        def now() -> dt.datetime:
            return dt.datetime.fromtimestamp(self._clock() / 1000, dt.UTC)

        def config_for(bundle: TrustBundle, at: dt.datetime) -> grpc.ServerCertificateConfiguration:
            state["digest"], state["until"] = bundle.digest, bundle.tls_roots_change_after(at)
            return grpc.ssl_server_certificate_configuration(
                [(self.keys.tls.key_pem, self.keys.tls.cert_pem)],
                root_certificates=bundle.root_certificates_pem(at),
            )

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            bundle, at = self._bundle, now()
            until = state["until"]
            if bundle.digest == state["digest"] and (until is None or at < until):
                return None
            return config_for(bundle, at)

        return grpc.dynamic_ssl_server_credentials(
            config_for(self._bundle, now()), fetch, require_client_authentication=True
        )

    def _service_credentials(self, client_certificates: bool) -> grpc.ServerCredentials:
        client_ca = None
        if client_certificates:
            try:
                client_ca = service_ca_cert(self.config.key_dir, self.config.limits)
            except StorageFailure as exc:
                raise ConfigurationError(
                    f"listen.service_mtls needs the service-system CA in {self.config.key_dir} "
                    "(made by `gateway keygen`, or by the first `gateway service-system add "
                    f"--cert-out`): {exc}"
                ) from exc
        return service_credentials(self.keys.tls, client_certificates, client_ca=client_ca)

    def start(self) -> BoundPorts:
        limits = self.config.limits
        opts = channel_options(limits)
        peer = GatewayServer(
            annotating(PeerAuthenticator(self.bundle, lambda: self._clock(), self.config.limits)),
            max_workers=limits.server_workers,
            name=f"peer-{self.me}",
            options=opts,
            authorize=authorize_peer,
            limits=self.config.limits,
            observe=ObservingWrapper(self.metrics, "peer", limits),
        )
        service = service_server(
            self.service_auth,
            self.config.limits,
            max_workers=limits.server_workers,
            name=f"svc-{self.me}",
            observe=ObservingWrapper(self.metrics, "service", limits),
        )
        peer_pb2_grpc.add_PeerExchangeServicer_to_server(
            PeerExchangeServicer(
                self.holder,
                statistics=self.statistics.handle_peer,
                witness=self.witnessing.handle,
                subject=self.subject_holder.handle,
                receipts=self.receipt_acceptor.handle,
                bulk=self.bulk_holder,
            ),
            peer,
        )
        service_pb2_grpc.add_RecordExchangeServicer_to_server(
            RecordExchangeServicer(self.requester, self.bundle, self.bulk_requester), service
        )
        stats_pb2_grpc.add_StatisticsServicer_to_server(
            StatisticsServicer(self.statistics.coordinator, caller_from_context, limits), service
        )
        subject_pb2_grpc.add_SubjectAccessServicer_to_server(
            SubjectAccessServicer(self.subject_access, caller), service
        )
        # The ledger API: members (peer port: checkpoints, proofs, their own
        # exchanges' entries) and local auditors (service port, role audit;
        # every read is itself ledgered). Both also say what this gateway, as
        # witness, last cosigned for another log (GetWitnessedCheckpoint).
        add_ledger_service(
            peer, self.ledger, limits, scope=MemberScope(limits), who=caller,
            witnessed=self.witness_store,
        )  # fmt: skip
        add_ledger_service(
            service, self.ledger, limits, scope=AuditScope(self.me, self.ledger, self._clock, limits),
            who=caller, witnessed=self.witness_store,
        )  # fmt: skip
        for srv in (peer, service):
            health_pb2_grpc.add_HealthServicer_to_server(self._health, srv)
        add_reflection(service)  # grpcurl / Postman explore the service port
        listen = self.config.listen
        peer_port = peer.listen("listen.peer", listen.peer, self._peer_credentials())
        service_port = service.listen(
            "listen.service", listen.service, self._service_credentials(client_certificates=False)
        )
        mtls_port = 0
        if listen.service_mtls:
            mtls_port = service.listen(
                "listen.service_mtls",
                listen.service_mtls,
                self._service_credentials(client_certificates=True),
            )
        self._ops = start_ops_listener(self)  # first: a refused address starts nothing
        peer.start()
        service.start()
        self._peer_server, self._service_server = peer, service
        self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        self._health.set(
            "dataexchange.gateway.v1.RecordExchange", health_pb2.HealthCheckResponse.SERVING
        )
        self._health.set(
            "dataexchange.gateway.v1.PeerExchange", health_pb2.HealthCheckResponse.SERVING
        )
        self._watcher = PolicyWatcher(self.policy_store).start()
        self.stores.lease.start()
        # Replicas without the lease ask its holder for checkpoints; only the
        # holder signs (the others' asks reach whichever replica holds it).
        self.stores.asks.serve(self.ledger.sign_if_holder)
        self._timer = LedgerTimer(
            self.ledger,
            self.witnessing,
            self.config.ledger.witness_every_seconds,
            self.stores.lease.held,
        ).start()
        self._bundle_watcher = threading.Thread(
            target=self._watch_bundle, name="bundle-watcher", daemon=True
        )
        self._bundle_watcher.start()
        self.receipts.start()
        self.ports = BoundPorts(
            peer_port, service_port, mtls_port, self._ops.port if self._ops else 0
        )
        log.info(
            "gateway %s serving: peer port %d, service port %d", self.me, peer_port, service_port
        )
        return self.ports

    def stop(self, grace: float = 1.0) -> None:
        self._stopping.set()
        self._health.enter_graceful_shutdown()
        if self._ops:
            self._ops.stop()
        if self._watcher:
            self._watcher.stop()
        if self._timer:
            self._timer.stop()
        events = [s.stop(grace) for s in (self._peer_server, self._service_server) if s]
        for e in events:
            e.wait()
        self.statistics.close()
        self.receipts.stop(flush=True)  # last receipts out before the transport closes
        self.subject_access.close()
        self.transport.close()
        self.source.close()
        self.stores.close()

    def wait(self) -> None:
        if self._service_server:
            self._service_server.wait_for_termination()


def service_credentials(
    tls: crypto.TlsIdentity, client_certificates: bool, client_ca: bytes | None = None
) -> grpc.ServerCredentials:
    """TLS of the service port. Token port: TLS only. Certificate port: the client
    certificate must be issued by ``client_ca``, this gateway's service-system CA
    (`gateway service-system add --cert-out`), a root the peer port never trusts."""
    if client_certificates and client_ca is None:
        raise ConfigurationError("the client-certificate service port needs the service CA")
    return grpc.ssl_server_credentials(
        [(tls.key_pem, tls.cert_pem)],
        root_certificates=client_ca if client_certificates else None,
        require_client_auth=client_certificates,
    )


def service_server(
    registry: ServiceRegistry,
    limits: Limits,
    *,
    max_workers: int,
    name: str,
    observe: HandlerWrapper | None = None,
) -> GatewayServer:
    """The service port's server (service systems and local auditors), nothing
    mounted yet: callers authenticated, and each method refused unless the
    caller's roles allow it."""
    return GatewayServer(
        annotating(registry),  # the RPC's log line names the authenticated caller
        max_workers=max_workers,
        name=name,
        options=channel_options(limits),
        authorize=registry.authorize,
        limits=limits,
        observe=observe,
    )


def open_ledger(
    config: GatewayConfig,
    stores: Stores,
    keys: GatewayKeys,
    origin: str,
    clock_ms: Callable[[], int],
) -> Ledger:
    """The gateway's ledger on its store, signing with its ledger key; only the
    holder of the signing lease signs checkpoints (the cadence, and those other
    replicas ask it for)."""
    return Ledger(
        stores.ledger,
        keys.ledger,
        origin,
        checkpoint_every=config.ledger.checkpoint_every_entries,
        checkpoint_interval=config.ledger.checkpoint_every_seconds,
        clock=lambda: clock_ms() / 1000.0,
        limits=config.limits,
        may_sign=stores.lease.held,
        ask_signer=stores.asks.ask,
    )


def from_config_file(path: Path, **kwargs: object) -> Gateway:
    return Gateway(load_config(path), **kwargs)  # type: ignore[arg-type]
