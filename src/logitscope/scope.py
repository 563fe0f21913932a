"""Scope: a loaded model (and tokenizer) ready for lens, logits and embedding queries."""

from __future__ import annotations

import torch

from .errors import NoLMHeadError
from .kernel import default_chunk_rows
from .parts import ModelParts, resolve


class Scope:
    """Wrap a Hugging Face model (and optionally its tokenizer) for inspection.

    Args:
        model: a ``*ForCausalLM``, ``*ForConditionalGeneration``/seq2seq LM or ``*ForMaskedLM``
            (a model without an LM head is accepted; lens/logits then raise ``NoLMHeadError``).
        tokenizer: needed for text input and readable tokens; token ids work without one.
        name: a label for results (defaults to the model's ``name_or_path``).
        self_check: verify at construction that the lens's last row reproduces the model's logits.
        chunk_size: rows (stream × position) projected at once; bounds extra memory to about
            ``2.3 * chunk_size * vocab * 4`` bytes. Default: ~16M logits per chunk.
    """

    def __init__(
        self, model, tokenizer=None, *, name: str | None = None, self_check: bool = True, chunk_size: int | None = None
    ):
        model.eval()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        try:
            self.parts: ModelParts | None = resolve(model)
            self._no_head: NoLMHeadError | None = None
        except NoLMHeadError as err:
            self.parts, self._no_head = None, err
        vocab = self.parts.vocab_size if self.parts else model.config.vocab_size
        self.chunk_size = int(chunk_size) if chunk_size else default_chunk_rows(vocab)
        if self_check and self.parts is not None:
            from .lens import self_check as check

            check(self)

    # -- properties --------------------------------------------------------------------------
    @property
    def config(self):
        return self.model.config

    @property
    def kind(self) -> str:
        """``"causal"``, ``"seq2seq"``, ``"masked"``, or ``"encoder"`` (no LM head)."""
        return self.parts.kind if self.parts else "encoder"

    @property
    def n_layers(self) -> int:
        """Number of blocks the lens runs over (streams = n_layers + 1)."""
        return self.require_head().n_blocks

    @property
    def input_device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def pad_id(self) -> int:
        for source in (self.tokenizer, self.model.config):
            pad = getattr(source, "pad_token_id", None)
            if isinstance(pad, int) and pad >= 0:
                return pad
        return 0

    def require_head(self) -> ModelParts:
        """The model's parts, or a clear ``NoLMHeadError`` when it has no LM head."""
        if self.parts is None:
            raise self._no_head
        return self.parts

    def __repr__(self) -> str:
        return f"Scope({self.name!r}, kind={self.kind}, model_type={self.model.config.model_type})"

    # -- queries -----------------------------------------------------------------------------
    def lens(
        self,
        inputs,
        *,
        target=None,
        track=None,
        layers=None,
        top_k: int = 5,
        batch_size: int = 8,
        truncate: bool = False,
    ):
        """Run the logit lens.

        Args:
            inputs: text, a list of token ids or a 1-D LongTensor (→ one ``LensResult``), or a
                list of those (→ a list, computed in right-padded batches).
            target: a continuation (text or ids) to teacher-force and score; for
                encoder-decoder models the decoder's text. A list gives one per input.
            track: tokens (single-token strings or ids) whose probability and rank are
                recorded at every stream and position.
            layers: stream rows to keep (0 = embeddings, negative from the end, or names).
            top_k: top tokens kept per cell.
            batch_size: inputs per forward pass.
            truncate: cut over-long inputs to the context length instead of raising.
        """
        from .lens import run_lens

        return run_lens(
            self,
            inputs,
            target=target,
            track=track,
            layers=layers,
            top_k=top_k,
            batch_size=batch_size,
            truncate=truncate,
        )
