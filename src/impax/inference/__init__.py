"""impax.inference."""
