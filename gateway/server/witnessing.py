"""Peer witnessing over the signed peer protocol, and the ledger's timer.

Owns: sending this gateway's newest checkpoint (with a consistency proof from
the size each peer last cosigned) to every federation peer, storing their
cosignatures; answering peers' witness requests (verify, cosign, remember,
keep fork/rollback evidence); the background thread that issues time-based
checkpoints and runs witness rounds.

Does not own: checkpoint formats, proofs or fork detection
(``gateway.ledger.witness``), envelopes (``gateway.exchange.peer``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gateway import domains
from gateway._proto.dataexchange.gateway.v1 import ledger_pb2, peer_pb2
from gateway.errors import GatewayError
from gateway.exchange.peer import PeerCaller, PeerResponder
from gateway.identity import GatewayKeys
from gateway.ledger.ledger import Ledger
from gateway.ledger.witness import (
    WitnessStore,
    apply_witness_response,
    handle_witness_request,
    make_witness_request,
    witnessed_size,
)
from gateway.limits import DEFAULT_LIMITS, Limits
from gateway.trust import TrustBundle

log = logging.getLogger("gateway.witness")


class Witnessing:
    def __init__(
        self,
        me: str,
        keys: GatewayKeys,
        bundle: Callable[[], TrustBundle],
        ledger: Ledger,
        caller: PeerCaller,
        responder: PeerResponder,
        store: WitnessStore,
        clock_ms: Callable[[], int],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._me = me
        self._limits = limits
        self._keys = keys
        self._bundle = bundle
        self._ledger = ledger
        self._caller = caller
        self._responder = responder
        self._store = store
        self._clock = clock_ms
        self._round_lock = threading.Lock()

    # -- sending our checkpoints ------------------------------------------

    def round(self, force: bool = False) -> dict[str, str]:
        """One witness round; returns peer -> outcome. Never raises."""
        outcomes: dict[str, str] = {}
        with self._round_lock:
            latest = self._ledger.latest_checkpoint()
            if latest is None or force:
                latest = self._ledger.checkpoint_now()
            for member in self._bundle().members:
                peer = member.jurisdiction
                if peer == self._me:
                    continue
                if not force and witnessed_size(self._ledger, peer) >= latest.checkpoint.size:
                    outcomes[peer] = "up to date"
                    continue
                try:
                    req = make_witness_request(self._ledger, peer_pb2.PeerHeader(recipient=peer))
                    reply = self._caller.call(
                        peer,
                        "Witness",
                        req,
                        domains.PEER_WITNESS_REQUEST,
                        domains.PEER_WITNESS_RESPONSE,
                        ledger_pb2.PeerWitnessResponse,
                    )
                    size = apply_witness_response(
                        self._ledger,
                        req,
                        reply.response,
                        peer,
                        member.witness_name,
                        member.ring("witness").at(self._clock()),
                        self._limits,
                    )
                    outcomes[peer] = f"cosigned size {size}"
                except GatewayError as exc:
                    outcomes[peer] = f"not cosigned: {exc}"
                    log.warning(
                        "witness %s did not cosign: %s",
                        peer,
                        exc,
                        extra={"event": "witness_refused", "peer": peer},
                    )
            cosigned = sum(o.startswith("cosigned") for o in outcomes.values())
            log.info(
                "witness round at size %d: %d cosigned, %d up to date, %d failed",
                latest.checkpoint.size,
                cosigned,
                sum(o == "up to date" for o in outcomes.values()),
                len(outcomes) - cosigned - sum(o == "up to date" for o in outcomes.values()),
                extra={
                    "event": "witness_round",
                    "size": latest.checkpoint.size,
                    "forced": force,
                    "peers": outcomes,
                },
            )
        return outcomes

    # -- witnessing peers' checkpoints --------------------------------------

    def handle(
        self, envelope: peer_pb2.SignedEnvelope, tls_identity: str
    ) -> peer_pb2.SignedEnvelope:
        request = self._responder.open(
            envelope, domains.PEER_WITNESS_REQUEST, ledger_pb2.PeerWitnessRequest, tls_identity
        )
        member = self._bundle().member(request.sender)
        response = handle_witness_request(
            request.message,
            request.sender,
            member.ring("ledger").at(self._clock()),
            self._keys.cosigner,
            self._bundle().member(self._me).witness_name,
            self._store,
            now=self._clock() / 1000.0,
            sender_origin=member.origin,
            limits=self._limits,
        )
        status = ledger_pb2.WitnessStatus.Name(response.status)
        if response.status in (
            ledger_pb2.WITNESS_STATUS_FORK,
            ledger_pb2.WITNESS_STATUS_INCONSISTENT,
        ):
            log.error(
                "LEDGER OF %s IS NOT CONSISTENT WITH WHAT IT SHOWED BEFORE (%s): %s; "
                "both signed checkpoints are kept as evidence in the witness store",
                request.sender,
                status,
                response.detail,
            )
        return self._responder.respond(request, response, domains.PEER_WITNESS_RESPONSE)


class LedgerTimer:
    """Background thread: time-based checkpoints and periodic witness rounds,
    run only while ``lease_held()`` (one replica of a gateway at a time)."""

    def __init__(
        self,
        ledger: Ledger,
        witnessing: Witnessing,
        witness_every_seconds: float,
        lease_held: Callable[[], bool] = lambda: True,
    ) -> None:
        self._ledger = ledger
        self._witnessing = witnessing
        self._lease_held = lease_held
        self._every = witness_every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-timer", daemon=True)

    def start(self) -> LedgerTimer:
        self._thread.start()
        return self

    def _run(self) -> None:
        since_round = 0.0
        while not self._stop.wait(1.0):
            try:
                if not self._lease_held():  # another replica signs and witnesses
                    since_round = 0.0
                    continue
                self._ledger.tick()
                since_round += 1.0
                if since_round >= self._every:
                    since_round = 0.0
                    self._witnessing.round()
            except GatewayError as exc:
                log.warning("ledger timer: %s", exc)
            except Exception:
                log.exception("ledger timer failed; retrying")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
