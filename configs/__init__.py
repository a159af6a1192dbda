"""Shipped analysis configs: default.yaml is the embedded default of ``tracerflow run``."""
