"""Hyper-parameter search (Optuna): search space, study runner, results and plots."""
