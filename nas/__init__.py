"""The nas workbench: DAG search spaces, strategies, predictors, latency tables and export."""
__version__ = "0.1.0"
