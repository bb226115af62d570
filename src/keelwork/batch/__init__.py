"""Batch scoring of files (CSV, JSONL, Parquet) through the same contract and pipeline."""
