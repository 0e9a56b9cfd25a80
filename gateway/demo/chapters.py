"""Demo chapters beyond record exchange: ledger evidence and statistics.

Each chapter registers itself in ``gateway.demo.run``.
"""

from __future__ import annotations
