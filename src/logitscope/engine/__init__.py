"""The lens engine: inputs, row capture, sub-layer rows, the streaming statistics kernel and
non-finite diagnosis."""
