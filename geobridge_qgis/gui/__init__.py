"""The plugin's widgets: the GeoBridge dock."""
