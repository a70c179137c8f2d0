"""Hyperparameter search with Optuna's ask/tell API, run by Hydra as the `emnist_optuna` sweeper."""
