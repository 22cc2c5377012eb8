"""See the package docstring of attestd."""
