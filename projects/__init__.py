"""Research projects built on ian_d2 (not part of the package), run from the repository root."""
