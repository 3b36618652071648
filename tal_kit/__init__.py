"""tal_kit: temporal action localization with InternVideo features and ActionFormer, as notebooks plus a thin library."""

__version__ = "0.1.0"
