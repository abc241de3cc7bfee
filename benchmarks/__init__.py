"""impax benchmark suite: ``python -m benchmarks [--short] [--json PATH] [--only NAME ...]``."""
