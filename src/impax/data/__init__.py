"""impax.data."""
