"""Long, coverage-guided fuzzing of every parser of outside bytes (see README.md)."""
