"""Raw inputs in: the download stage (fetching) and the extract stage with one extractor per source (see docs/sources.md)."""
