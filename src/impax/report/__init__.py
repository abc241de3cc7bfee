"""impax.report."""
