"""impax.evaluation."""
