"""A small service whose own test suite uses infraboot's test kit the way a real one would."""
