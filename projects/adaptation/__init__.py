"""Issue 28's measurements: direct transfer vs adapted vs oracle on the synthetic target site
(``python -m projects.adaptation.run``, docs/ADAPT.md)."""
