"""Evaluation: metrics, the full-ranking protocol, baselines and reports."""
