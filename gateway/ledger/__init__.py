"""The verifiable ledger: RFC 9162 Merkle log with a hash chain, C2SP signed
checkpoints and cosignatures, proofs, witnessing, evidence bundles and audits.

The rest of the gateway appends through ``gateway.ledger.events.LedgerWriter``.
"""
