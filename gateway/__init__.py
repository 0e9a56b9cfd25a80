"""Privacy-preserving cross-jurisdiction data-exchange gateway.

Subpackages: ``server`` (gRPC servicers and wiring), ``exchange`` (the record
exchange core), ``policy`` (sharing agreements), ``ledger`` (verifiable log),
``stats`` (differentially private statistics), ``cli`` (the ``gateway``
command). ``crypto`` is the only module that touches cryptographic libraries;
``errors`` is the one error tree; ``_proto`` is generated code.
"""

__version__ = "0.1.0"
