"""The model's own outputs: next-token logits, greedy decoding, embeddings and model facts."""
