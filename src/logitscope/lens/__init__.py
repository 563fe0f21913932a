"""Lenses over captured rows: the run, its result (:class:`LensResult`), export and full per-layer logits."""
