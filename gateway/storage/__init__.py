"""The gateway's own state, behind small Protocols, on SQLite or PostgreSQL.

Owns: choosing a backend from ``[storage]`` in gateway.toml (``backend``),
the checkpoint-signing lease (``lease``) and the PostgreSQL implementations of
every store (``postgres``). The SQLite implementations stay beside their
Protocols (``gateway.ledger.storage``, ``gateway.replay``,
``gateway.policy.quota``, ``gateway.stats.budget``, ``gateway.ledger.witness``,
``gateway.trust``): a PostgreSQL store is a new implementation, callers are
unchanged.
"""
