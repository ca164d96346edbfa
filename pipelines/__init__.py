"""Precision-marketing ML platform: every stage as plain functions over DataFrames.

Importing this package does nothing else: no folders, no tracking URIs, no database connections, no Airflow.
"""

__version__ = "0.1.0"
