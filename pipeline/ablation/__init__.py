"""Ablations: variants of a run's documents, chosen by their signals and compared by the models they train (issue 24)."""
