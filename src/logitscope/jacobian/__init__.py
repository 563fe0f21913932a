"""The Jacobian lens (Gurnee et al. 2026): fit, save, load and read out, in the published format.

``format.py`` holds :class:`JacobianLens` (per-block average Jacobians ``J_l`` and the readout
``tail(h @ J_lᵀ)``) and its on-disk layout, ``estimator.py`` the per-prompt estimator (one forward,
``ceil(d / dim_batch)`` VJPs), ``streamed.py`` the same VJPs block by block on a streamed model,
``fit.py`` the average over prompts (checkpoints, torchrun), ``prompts.py`` how texts, id lists
and corpora become prompts, ``checkpoint.py`` resumable fit state, ``progress.py`` the CLI's
progress display. ``jacobian="demo"`` is the lens shipped for the bundled demo model
(``demo/lens.pt``, made by ``scripts/fit_demo_jlens.py``). docs/jacobian_lens.md.
"""

from .format import JacobianLens

__all__ = ["JacobianLens"]
