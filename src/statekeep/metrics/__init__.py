"""Metrics: latency histograms (log-linear, mergeable, quantiles within 1%)
over sliding windows. A leaf: it imports only the standard library.

Issue 16 builds the registry, alerts, advice and export on these."""

from ._histogram import SUB, Histogram, Windowed, bucket_of, merged, middle_of

__all__ = ["SUB", "Histogram", "Windowed", "bucket_of", "merged", "middle_of"]
