"""Domain-separation tags: every signature, seal and keyed hash names its purpose.

Owns: the constant tags (and nothing else). Every tag is unique, ASCII and
versioned; ``tests/test_domains.py`` checks uniqueness. A signature made for one
purpose can never verify for another because the tag is inside the signed
pre-authentication encoding (see ``gateway.crypto.pae``).
"""

from __future__ import annotations

from typing import Final

# Peer envelope payload types (signed with PAE, DSSE-style).
PEER_RECORD_REQUEST: Final = "cn.dataexchange.gateway.v1.PeerRecordRequest"
PEER_RECORD_RESPONSE: Final = "cn.dataexchange.gateway.v1.PeerRecordResponse"
PEER_STATS_REQUEST: Final = "cn.dataexchange.gateway.v1.PeerStatsRequest"
PEER_STATS_RESPONSE: Final = "cn.dataexchange.gateway.v1.PeerStatsResponse"
PEER_WITNESS_REQUEST: Final = "cn.dataexchange.gateway.v1.PeerWitnessRequest"
PEER_WITNESS_RESPONSE: Final = "cn.dataexchange.gateway.v1.PeerWitnessResponse"
# What a peer envelope's signature is made over: the federation suite's hash
# (SHA-256; SM3 for gm) of PAE(payload type, payload), the digest both ledger entries record, so an officer can check the
# signature offline from the entry alone.
ENVELOPE_DIGEST: Final = "cn.dataexchange.gateway.v1.EnvelopeDigest"
# Receipts: the requester's batch, the holder's answer, and each receipt's own signature.
PEER_RECEIPT_BATCH: Final = "cn.dataexchange.gateway.v1.PeerReceiptBatch"
PEER_RECEIPT_ACK: Final = "cn.dataexchange.gateway.v1.PeerReceiptAck"
EXCHANGE_RECEIPT: Final = "cn.dataexchange.gateway.v1.ExchangeReceipt"
PEER_STREAM_REQUEST: Final = "cn.dataexchange.gateway.v1.PeerStreamRequest"
PEER_STREAM_START: Final = "cn.dataexchange.gateway.v1.PeerStreamStart"
PEER_STREAM_END: Final = "cn.dataexchange.gateway.v1.PeerStreamEnd"

# Federation trust bundle, signed by the federation authority.
TRUST_BUNDLE: Final = "cn.dataexchange.gateway.v1.TrustBundle"

# Sealing (authenticated encryption to a recipient's X25519 key).
SEAL_RECORD_PAYLOAD: Final = "cn.dataexchange.gateway.v1.seal.RecordPayload"
SEAL_RECORD_CHUNK: Final = "cn.dataexchange.gateway.v1.seal.RecordChunk"

# Hash chain over the chunks of a streamed bulk transfer (its first link).
STREAM_COMMITMENT: Final = "cn.dataexchange.gateway.v1.stream.commitment"

# Keyed hashes.
PSEUDONYM: Final = "cn.dataexchange.gateway.v1.pseudonym"
# Derives each requester's pseudonym key from the gateway's pseudonym secret.
PSEUDONYM_REQUESTER_KEY: Final = "cn.dataexchange.gateway.v1.pseudonym.requester-key"

ALL_TAGS: Final = (
    PEER_RECORD_REQUEST,
    PEER_RECORD_RESPONSE,
    PEER_STATS_REQUEST,
    PEER_STATS_RESPONSE,
    PEER_WITNESS_REQUEST,
    PEER_WITNESS_RESPONSE,
    ENVELOPE_DIGEST,
    PEER_RECEIPT_BATCH,
    PEER_RECEIPT_ACK,
    EXCHANGE_RECEIPT,
    PEER_STREAM_REQUEST,
    PEER_STREAM_START,
    PEER_STREAM_END,
    TRUST_BUNDLE,
    SEAL_RECORD_PAYLOAD,
    SEAL_RECORD_CHUNK,
    STREAM_COMMITMENT,
    PSEUDONYM,
    PSEUDONYM_REQUESTER_KEY,
)
