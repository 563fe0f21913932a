"""The tuned lens (Belrose et al. 2023): train, apply, save and load, in tuned-lens 0.2.0's format.

``lens.py`` holds :class:`TunedLens` (one affine translator per stream row, then the model's own
exact tail), ``format.py`` the on-disk format, ``train.py`` the training loop (streaming, one
layer backpropagated at a time, data-parallel under torchrun), ``checkpoint.py`` resumable
checkpoints. Logit-vs-tuned corpus metrics are :mod:`logitscope.evaluate.lens_comparison`.
``tuned="demo"`` is the lens shipped for the bundled demo model (``demo/``, made by ``scripts/train_tuned_demo.py``).
"""

from .format import TunedLensConfig, unembed_hash
from .lens import TunedLens, load_lens, save_lens

__all__ = ["TunedLens", "TunedLensConfig", "load_lens", "save_lens", "unembed_hash"]
