"""Generators of the committed files that derive from the code: the CRD copies and the API
reference. Each has ``--check`` (used by the staleness tests) and ``--stdout``."""
