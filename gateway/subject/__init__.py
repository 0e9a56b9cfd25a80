"""Subject access: a verifiable, federated "who read my data" for each person.

Modules: ``index`` (the keyed blind index of a subject id, the Merkle
commitment over an entry's set of indexes, and the details an entry records),
``store`` (the holder's index store: a Protocol and its SQLite
implementation), ``indexer`` (the holder's ledger writer that stores the
indexes and makes the entry commit to them), ``model`` (the history values and
their merge), ``holder`` (answering a subject-access request with entries and
proofs), ``verify`` (pure verification of a holder's answer against the trust
bundle's keys), ``requester`` (fanning a portal's request out to every member
and merging the verified answers), ``ratelimit`` and ``audit`` (the officer's
offline check).
"""
