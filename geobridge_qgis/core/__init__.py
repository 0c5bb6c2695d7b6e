"""The GeoBridge engine: bundle, encoders, chip grid, index, locate. Never imports QGIS."""
