"""Scaling laws: the compute/inference-optimal planner, the sweep and the fit."""
