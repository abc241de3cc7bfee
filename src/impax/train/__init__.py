"""impax.train."""
