"""wijk_assets: orchestrated, explainable neighbourhood analytics for Dutch municipalities."""

__version__ = "0.1.0"
