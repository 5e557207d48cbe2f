"""llamix: pipeline."""
