"""impax.geometry."""
