"""Corpus input: sources → documents → token stream → windows, and the processes that share them."""
