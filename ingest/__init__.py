"""Per-source raw-input extractors (see docs/sources.md)."""
