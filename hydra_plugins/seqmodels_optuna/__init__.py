"""seqmodels' Optuna sweeper for Hydra: searches kept in a database (see sweeper.py)."""
