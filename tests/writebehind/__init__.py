"""Tests of the write-behind pipeline (store.enqueue), on every backend of the
conformance registry."""
