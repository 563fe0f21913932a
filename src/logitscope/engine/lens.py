"""The Lens protocol: a lens maps a captured row to a residual-stream vector; the model's own tail does the rest.

Every lens in logitscope is a *row transform* followed by the model's own tail
(:meth:`~logitscope.arch.parts.ModelParts.unembed`: final norm → rescale → pre-head modules →
head → logits bias → softcap/scaling)::

    logits(row, h) = tail(lens.transform(row, h))

* logit lens: ``transform(row, h) = h`` (:class:`LogitLens`);
* tuned lens: ``h + W_l h + b_l`` (:class:`logitscope.tuned.TunedLens`);
* Jacobian lens: ``h @ J_l^T`` (:mod:`logitscope.jacobian`).

The engine (:mod:`logitscope.engine.run`) captures the rows, calls :meth:`Lens.transform` on
each, and streams the kernel's statistics; a lens never sees the vocabulary, so every
statistic, NaN check and output format is the same for every lens. The final stream row ``L``
is never passed to ``transform``: it is the model's own output, the reference of ``kl_to_final``
(the last row of every result equals the model's logits, whatever the lens).

A lens is any object with the attributes below (structural typing: no base class to inherit).
``scope.lens(..., lens=...)`` takes such an object, or a path whose kind is detected from its
contents (:mod:`logitscope.lens.select`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .rows import Row

if TYPE_CHECKING:  # pragma: no cover - annotations only; torch is imported by the engine
    from torch import Tensor


@runtime_checkable
class Lens(Protocol):
    """What the engine needs from a lens.

    Attributes:
        kind: a short lowercase name: ``"logit"``, ``"tuned"``, ``"jacobian"``. Results record it
            as ``meta["lens"]`` (and :meth:`describe` as ``meta[f"{kind}_lens"]`` for lenses other
            than the logit lens); the viewer and the CLI show it.
    """

    kind: str

    def describe(self) -> str:
        """A short label for results and messages: where the lens came from (a path, ``"demo"``)."""
        ...

    def covers(self, row: Row) -> bool:
        """Whether this lens has a transform for ``row`` (a stream row ``int`` or a sub-layer name).

        The engine refuses (``InputError``) a requested row a lens does not cover, and with
        ``layers=None`` keeps only the rows it covers (plus the final row). Never called with the
        final row ``L``.
        """
        ...

    def transform(self, row: Row, h: Tensor) -> Tensor:
        """Map the captured stream ``h`` of ``row`` to a residual-stream vector for the model's tail.

        Args:
            row: the row ``h`` was captured at (``covers(row)`` is true; never the final row).
            h: ``(..., d_model)`` in the model's dtype, on the device the engine holds the rows on
                (the final block's; on a one-device model the head's); positions along the leading
                dimensions (the engine passes ``(N, d_model)``).

        Returns:
            The same shape, dtype and device. Return ``h`` itself when the transform is the
            identity (the engine then skips the copy); never modify ``h`` in place. Called under
            ``torch.no_grad()``.
        """
        ...

    def check_model(self, scope, *, strict: bool = True) -> None:
        """Refuse a lens made for another model, before any work.

        Args:
            scope: the :class:`~logitscope.Scope` the lens is about to be applied to.
            strict: with ``False``, a soft mismatch (e.g. a different unembedding hash) only warns.

        Raises:
            LensMismatchError: the lens does not fit ``scope``'s model (block count, width, hash).
        """
        ...


class LogitLens:
    """The logit lens: every row as it is (``transform(row, h) = h``), through the model's own tail."""

    kind = "logit"

    def describe(self) -> str:
        return "logit lens"

    def covers(self, row: Row) -> bool:
        return True

    def transform(self, row: Row, h: Tensor) -> Tensor:
        return h

    def check_model(self, scope, *, strict: bool = True) -> None:
        return None

    def __repr__(self) -> str:
        return "LogitLens()"


LOGIT_LENS = LogitLens()


def is_identity(lens: Lens | None) -> bool:
    """Whether ``lens`` is the logit lens (``None`` counts as the logit lens)."""
    return lens is None or isinstance(lens, LogitLens)
