"""Evaluation: errors and summaries, the landmark-based rigid fit, differential radiomics, seeds."""
