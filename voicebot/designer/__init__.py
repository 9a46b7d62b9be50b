"""Designers' tools: data validation, training with progress, trying phrases and the NLU quality report."""
