"""The parts of OpenDP the statistics engine uses, under the usual ``dp`` name.

Not ``opendp.prelude``: that also imports OpenDP's scikit-learn and NumPy
extras, about 90 MB of resident memory and a second of start-up in every
gateway process, whether or not it ever answers a statistic.
"""

from __future__ import annotations

from opendp import measurements as m
from opendp.accuracy import summarize_polars_measurement
from opendp.domains import (
    atom_domain,
    enum_domain,
    lazyframe_domain,
    option_domain,
    series_domain,
    with_margin,
)
from opendp.measures import max_divergence
from opendp.metrics import symmetric_distance, symmetric_id_distance
from opendp.mod import enable_features

__all__ = [
    "atom_domain",
    "enable_features",
    "enum_domain",
    "lazyframe_domain",
    "m",
    "max_divergence",
    "option_domain",
    "series_domain",
    "summarize_polars_measurement",
    "symmetric_distance",
    "symmetric_id_distance",
    "with_margin",
]
