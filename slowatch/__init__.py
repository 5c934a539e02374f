"""slowatch: watches service-level objectives on Prometheus."""

__version__ = "0.1.0"
