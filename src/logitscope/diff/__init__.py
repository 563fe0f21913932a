"""Comparing two models (or two prompts) row by row: one prompt, or a whole corpus."""
