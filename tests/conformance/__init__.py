"""The conformance suite: one contract, run unchanged against every backend."""
