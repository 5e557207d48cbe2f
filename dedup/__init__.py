"""llamix: dedup."""
