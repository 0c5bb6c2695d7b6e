"""GeoBridge's Processing provider: build an index, locate photos, locate a description."""
