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

PEER_SUBJECT_REQUEST: Final = "cn.dataexchange.gateway.v1.PeerSubjectRequest"
PEER_SUBJECT_RESPONSE: Final = "cn.dataexchange.gateway.v1.PeerSubjectResponse"

# Federation trust bundle, signed by the federation authority.
TRUST_BUNDLE: Final = "cn.dataexchange.gateway.v1.TrustBundle"

# Sealing (authenticated encryption to a recipient's X25519 key).
SEAL_RECORD_PAYLOAD: Final = "cn.dataexchange.gateway.v1.seal.RecordPayload"
# A subject-access request's subject id (to the holder) and its answer (back).
SEAL_SUBJECT_QUERY: Final = "cn.dataexchange.gateway.v1.seal.SubjectQuery"
SEAL_SUBJECT_HISTORY: Final = "cn.dataexchange.gateway.v1.seal.SubjectHistory"
SEAL_RECORD_CHUNK: Final = "cn.dataexchange.gateway.v1.seal.RecordChunk"

# Hash chain over the chunks of a streamed bulk transfer (its first link).
STREAM_COMMITMENT: Final = "cn.dataexchange.gateway.v1.stream.commitment"

# Keyed hashes.
PSEUDONYM: Final = "cn.dataexchange.gateway.v1.pseudonym"
# Derives each requester's pseudonym key from the gateway's pseudonym secret.
PSEUDONYM_REQUESTER_KEY: Final = "cn.dataexchange.gateway.v1.pseudonym.requester-key"
# The holder's blind-index key, derived from its pseudonym secret (never leaves it),
# and the blind index of a normalised subject id under that key.
SUBJECT_INDEX_KEY: Final = "cn.dataexchange.gateway.v1.subject-index.key"
SUBJECT_INDEX: Final = "cn.dataexchange.gateway.v1.subject-index"
# The digest of the fields an entry released, recorded in the entry.
RELEASED_FIELDS: Final = "cn.dataexchange.gateway.v1.released-fields"

ALL_TAGS: Final = (
    PEER_RECORD_REQUEST,
    PEER_RECORD_RESPONSE,
    PEER_STATS_REQUEST,
    PEER_STATS_RESPONSE,
    PEER_WITNESS_REQUEST,
    PEER_WITNESS_RESPONSE,
    PEER_SUBJECT_REQUEST,
    PEER_SUBJECT_RESPONSE,
    ENVELOPE_DIGEST,
    PEER_RECEIPT_BATCH,
    PEER_RECEIPT_ACK,
    EXCHANGE_RECEIPT,
    PEER_STREAM_REQUEST,
    PEER_STREAM_START,
    PEER_STREAM_END,
    TRUST_BUNDLE,
    SEAL_RECORD_PAYLOAD,
    SEAL_SUBJECT_QUERY,
    SEAL_SUBJECT_HISTORY,
    SEAL_RECORD_CHUNK,
    STREAM_COMMITMENT,
    PSEUDONYM,
    PSEUDONYM_REQUESTER_KEY,
    SUBJECT_INDEX_KEY,
    SUBJECT_INDEX,
    RELEASED_FIELDS,
)
