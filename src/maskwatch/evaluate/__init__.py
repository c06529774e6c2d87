"""Scoring: classification metrics on crop datasets, detection AP on scene datasets."""
