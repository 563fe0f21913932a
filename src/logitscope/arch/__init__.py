"""Architecture knowledge: the per-``model_type`` registry, structural discovery, the model's parts
(blocks and unembedding tail) and the weight sanity checks."""
