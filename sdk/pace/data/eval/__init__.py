"""Evaluation prompt sets and the knowledge multiple-choice set."""
