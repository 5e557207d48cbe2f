"""llamix: filters."""
