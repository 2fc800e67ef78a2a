"""Runs: the record of a train/evaluate run, its store, the shared trainer and the orchestration.

Kept import-light (no torch at import time): the CLI lists runs without loading any model code.
"""
