"""Probes of a trained model beyond the method §3 profile, each an `eval.py` subcommand:
`truncate` (how much of the residual stream comes from beyond the last k tokens) and `interpolate`
(which branch, attention or MLP, makes the plateaus and cliffs along a path between two residual
vectors)."""
