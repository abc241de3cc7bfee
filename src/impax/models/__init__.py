"""impax.models."""
