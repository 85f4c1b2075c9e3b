"""Evaluation: the streaming many-particle evaluator (paper Table 1), tracking metrics, the addition experiment,
figures, and `sqair-eval`."""
