"""Every error logitscope raises on bad input: one clear exception type per cause.

All derive from :class:`LogitscopeError`, so callers (and the CLI, which turns them into a
one-line message and exit code 2) can catch them together.
"""

from __future__ import annotations


class LogitscopeError(Exception):
    """Base class of every error raised deliberately by logitscope."""


class ModelNotFoundError(LogitscopeError):
    """The model id or path does not resolve to a model."""


class CorruptWeightsError(LogitscopeError):
    """The weights cannot be read, some are missing, or some hold NaN/inf (the message names them)."""


class RemoteCodeError(LogitscopeError):
    """The model needs custom code and ``trust_remote_code=True`` was not passed."""


class NoLMHeadError(LogitscopeError):
    """The model has no language-modelling head, so there are no logits to compute."""


class UnsupportedModelError(LogitscopeError):
    """logitscope could not find the blocks/norm/head of this architecture, or its self-check failed."""


class InputError(LogitscopeError, ValueError):
    """The text or ids given cannot be run (empty, too long, unknown token...)."""


class EmptyInputError(InputError):
    """The input has no tokens."""


class ContextLengthError(InputError):
    """The input is longer than the model's context window."""


USUAL_NONFINITE_CAUSES = (
    "the usual causes: NaN/inf weights, an overflow in float16/bfloat16 (try dtype='float32'), "
    "or NaN in padded positions (try batch_size=1)"
)


class NonFiniteError(LogitscopeError):
    """The model produced NaN or infinite logits (fp16 overflow, NaN weights...): no statistic is trustworthy.

    The message is ``"{where}: {cause}"``, or ``"{where}; the usual causes: ..."`` while the cause
    is unknown (:func:`logitscope.engine.nonfinite.explain` finds it).

    Attributes:
        where: what holds NaN/inf, e.g. ``"the lens logits hold NaN or inf (rows 0-12 of positions 0-5)"``.
        cause: why, when known, else ``None``.
    """

    def __init__(self, where: str, cause: str | None = None):
        self.where = where
        self.cause = cause
        super().__init__(f"{where}: {cause}" if cause else f"{where}; {USUAL_NONFINITE_CAUSES}")


class LensMismatchError(LogitscopeError):
    """A lens or artefact was made for a different model than the one it is applied to."""


class OutputError(LogitscopeError):
    """An output destination cannot be written (a missing directory, a file where a directory is
    wanted, no permission); checked before any work is done."""
