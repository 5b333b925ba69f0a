"""siem-gad: graph anomaly detection for SIEMs."""

from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
