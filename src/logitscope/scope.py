"""Scope: a loaded model (and tokenizer) ready for lens, logits and embedding queries."""

from __future__ import annotations

import torch

from .arch.parts import ModelParts, find_parts, module_device
from .arch.registry import residual_width
from .arch.weights import check_model
from .engine.check import deferred, ensure_checked, schedule_check
from .engine.inputs import padding_id
from .engine.kernel import default_chunk_rows
from .errors import NoLMHeadError


class Scope:
    """Wrap a Hugging Face model (and optionally its tokenizer) for inspection.

    The model is switched to ``eval()`` mode (dropout off), in place: the caller's model object
    stays in eval mode afterwards. Weights holding NaN/inf raise ``CorruptWeightsError`` (naming
    them) from lens/logits; ``info``/``embed``/``nearest`` still work where the embeddings are finite.

    Args:
        model: a ``*ForCausalLM``, ``*ForConditionalGeneration``/seq2seq LM or ``*ForMaskedLM``
            (a model without an LM head is accepted; lens/logits then raise ``NoLMHeadError``).
        tokenizer: needed for text input and readable tokens; token ids work without one.
        name: a label for results (defaults to the model's ``name_or_path``).
        self_check: verify at construction that the lens's last row reproduces the model's logits.
        chunk_size: rows (stream × position) projected at once; bounds extra memory to about
            9–13 bytes × ``chunk_size`` × vocab (see ``kernel.stream_stats``). Default: ~16M
            logits per chunk, at least 256 rows for a model 2048 or more wide
            (``kernel.default_chunk_rows``).
    """

    def __init__(
        self, model, tokenizer=None, *, name: str | None = None, self_check: bool = True, chunk_size: int | None = None
    ):
        check_model(model, tokenizer)
        model.eval()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.parts: ModelParts | None
        self._no_head: NoLMHeadError | None
        self.parts, self._no_head = find_parts(model)  # no LM head: kept for lens/logits to raise
        vocab = self.parts.vocab_size if self.parts else model.config.vocab_size
        self.chunk_size = int(chunk_size) if chunk_size else default_chunk_rows(vocab, residual_width(model.config))
        # Now; or, with the weights on disk (streamed, offloaded), along the first lens/eval forward.
        schedule_check(self, self_check)

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
        return module_device(self.model.get_input_embeddings())  # its hook's device; Musicgen: a list

    @property
    def pad_id(self) -> int:
        """The id right-padded batches are filled with (the tokenizer's, else the config's, else 0)."""
        return padding_id(self.tokenizer, self.model.config)

    def require_head(self) -> ModelParts:
        """The model's parts, or a clear ``NoLMHeadError`` when it has no LM head."""
        ensure_checked(self)  # a pending self-check off the lens/eval paths; NaN weights found by it
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
        tuned=None,
        lens=None,
        strict: bool = True,
        sublayers: bool = False,
        jacobian=None,
    ):
        """Run the logit lens (or, with ``lens=`` / ``tuned=`` / ``jacobian=``, another lens).

        Args:
            inputs: text, a list of token ids or a 1-D LongTensor (→ one ``LensResult``), or a
                list of those (→ a list, computed in right-padded batches).
            target: a continuation (text or ids) to teacher-force and score; for
                encoder-decoder models the decoder's text. With a list of inputs, a list of
                texts (or ``None``/id lists) gives one per input; a flat list of ints is one
                shared id continuation. ``truncate`` never cuts the target.
            track: tokens (single-token strings or ids) whose probability and rank are
                recorded at every stream and position.
            layers: stream rows to keep (0 = embeddings, negative from the end, or names).
            top_k: top tokens kept per cell.
            batch_size: inputs per forward pass.
            truncate: cut over-long inputs to the context length instead of raising.
            tuned: a :class:`~logitscope.tuned.TunedLens`, a tuned-lens folder, or ``"demo"``:
                rows 0..L-1 become ``tail(h + W h + b)`` (docs/tuned_lens.md); ``meta["lens"]``
                says which lens made the result.
            lens: any lens: a lens object (:class:`~logitscope.engine.lens.Lens`: the logit lens,
                a :class:`~logitscope.tuned.TunedLens`, a Jacobian lens...), a lens folder or file
                (its kind read from its contents: :mod:`logitscope.lens.select`), ``"logit"`` or
                ``"demo"``. Every lens maps each row ``h`` to ``transform(row, h)``, then the model's
                own tail; ``meta["lens"]`` says which. Give ``lens=`` or ``tuned=``, not both.
            strict: refuse a lens whose unembedding hash differs from the model's.
            sublayers: also show each block's stream after attention, as a row ``"3.attn"``
                before row ``"3"`` (``"3.in+attn"`` for parallel blocks; docs/inside.md).
            jacobian: a :class:`~logitscope.jacobian.JacobianLens`, a J-lens file or ``"demo"``: row
                ``l + 1`` becomes ``tail(h @ J_lᵀ)`` for each fitted block ``l`` (docs/jacobian_lens.md).
        """
        from .lens.run import run_lens

        with deferred(self):  # a pending self-check rides along
            return run_lens(
                self, inputs, target=target, track=track, layers=layers, top_k=top_k, batch_size=batch_size,
                truncate=truncate, tuned=tuned, lens=lens, strict=strict, sublayers=sublayers, jacobian=jacobian,
            )  # fmt: skip

    # -- the model's own outputs (outputs/logits.py, outputs/embeddings.py) ---------------------
    def logits(
        self,
        inputs,
        *,
        target=None,
        generate: int | None = None,
        batch_size: int = 8,
        truncate: bool = False,
        device="cpu",
        dtype=torch.float32,
    ):
        """The model's own output logits at every position.

        Args:
            inputs: text, token ids or a 1-D LongTensor (→ one ``LogitsResult``), or a list of
                those (→ a list; batched with padding, same logits as one at a time).
            target: causal LMs: a continuation appended to the input; encoder-decoder models: the
                decoder text, teacher-forced (logits at the start token and every target token).
                Without it an encoder-decoder model gives the first decoder step only.
            generate: greedy-decode up to this many tokens; each row of ``logits`` is one step.
            batch_size: inputs per forward pass.
            truncate: cut over-long inputs to the context length instead of raising.
            device: where the logits are returned (``None``: the model's device).
            dtype: their dtype (``None``: the model's).
        """
        from .outputs.logits import run_logits

        return run_logits(
            self,
            inputs,
            target=target,
            generate=generate,
            batch_size=batch_size,
            truncate=truncate,
            device=device,
            dtype=dtype,
        )

    # -- the escape hatch: full lens logits (lens/layer_logits.py; docs/lens_output.md) ------------
    def unembed(self, h):
        """The model's own tail (final norm, scaling, head, logit transforms) on hidden states.

        Args:
            h: (..., d_model) tensor or array, any floating dtype (cast to the model's); gradients
                flow when it requires grad.

        Returns:
            (..., vocab) float32 logits on the head's device.
        """
        from .lens.layer_logits import unembed

        return unembed(self, h)

    def layer_logits(
        self,
        inputs,
        *,
        layers=None,
        target=None,
        batch_size: int = 8,
        truncate: bool = False,
        device="cpu",
        lens=None,
        strict: bool = True,
    ):
        """Full float32 lens logits at chosen stream rows: ``S × P × vocab`` per input (the lens
        itself never holds these; use ``layers=`` to keep it small).

        Args:
            inputs: as in :meth:`lens` (one input → one result, a list → a list).
            layers: stream rows (0 = embeddings, negative from the end, or names); default all.
            target, batch_size, truncate: as in :meth:`lens`.
            device: where the logits are returned.
            lens, strict: as in :meth:`lens` (default: the logit lens, whose rows equal the model
                itself with the later blocks removed).

        Returns:
            :class:`~logitscope.lens.layer_logits.LayerLogits` with ``logits`` (S, P, V) float32.
        """
        from .lens.layer_logits import layer_logits

        return layer_logits(
            self,
            inputs,
            layers=layers,
            target=target,
            batch_size=batch_size,
            truncate=truncate,
            device=device,
            lens=lens,
            strict=strict,
        )

    # -- inside blocks and across models (attribute/, diff/; docs/inside.md) -------------------
    def attribute(self, inputs, *, target=None, truncate: bool = False):
        """Direct logit attribution: what the embeddings and each block's attention and MLP outputs
        add to a target token's logit, through the final norm frozen at the final stream's scale.

        Args:
            inputs: one text or list of token ids.
            target: ``None`` (the model's top-1 token at each position), one token (string or id)
                for every position, or one id per position.
            truncate: cut an over-long input to the context length instead of raising.

        Returns:
            :class:`~logitscope.attribute.result.AttributionResult`; softcapped models attribute
            the pre-softcap logit.
        """
        from .attribute.run import run_attribute

        return run_attribute(self, inputs, target=target, truncate=truncate)

    def compare(self, other=None, inputs=None, *, against=None, top_k: int = 5, truncate: bool = False):
        """Lens diff: this model (A) against ``other`` (B) on ``inputs``, or ``inputs`` against a
        second prompt ``against=`` on this model. See :func:`logitscope.diff.run.compare`.

        Returns:
            :class:`~logitscope.diff.result.DiffResult`: per row and position KL(A ‖ B), top-1
            agreement and each side's top-k; rows aligned by fraction of depth when depths differ.
        """
        from .diff.run import compare

        return compare(self, other, inputs, against=against, top_k=top_k, truncate=truncate)

    def info(self):
        """Architecture, size, layers, d_model, vocab, tied embeddings, head modules, dtype, device."""
        from .outputs.embeddings import model_info

        return model_info(self)

    def nearest(self, token, k: int = 10, *, metric: str = "cosine", include_self: bool = False):
        """Tokens whose input embeddings are nearest to a token's (or a vector's).

        Args:
            token: a single-token string, a token id, a (d_model,) vector, or a list of those.
            k: how many neighbours.
            metric: ``"cosine"`` or ``"dot"``.
            include_self: keep the query token among its neighbours.
        """
        from .outputs.embeddings import nearest

        return nearest(self, token, k=k, metric=metric, include_self=include_self)

    def embed(self, inputs, *, special_tokens: bool = True):
        """Input embedding vectors (rows of the embedding table) of a text or ids: ``(P, d_model)``."""
        from .outputs.embeddings import embed

        return embed(self, inputs, special_tokens=special_tokens)

    def embed_through_head(self, inputs, k: int = 10, *, tail: bool = False, special_tokens: bool = True):
        """Input embeddings projected by the output head; the top-k tokens per position.

        Args:
            inputs: text or token ids.
            k: tokens kept per position.
            tail: ``False``: the head matrix only (``lm_head(wte(ids))``); ``True``: the model's whole
                unembedding (final norm, scaling, head, logit transforms).
            special_tokens: add the tokenizer's special tokens to text.
        """
        from .outputs.embeddings import embed_through_head

        return embed_through_head(self, inputs, k=k, tail=tail, special_tokens=special_tokens)

    def evaluate(
        self,
        data,
        *,
        max_tokens: int | None = None,
        seq_len: int | None = None,
        batch_size: int | str = "auto",
        ci: str = "bootstrap",
        confidence: float = 0.95,
        n_boot: int = 1000,
        seed: int = 0,
        dist=None,
        progress=None,
        tuned=None,
        strict: bool = True,
        jacobian=None,
    ):
        """Per-layer cross-entropy, bits per byte, KL to final, entropy and top-1 curves over a corpus.

        Documents are tokenised lazily, each followed by EOS, and cut into windows of
        ``seq_len + 1`` tokens overlapping by one, so every token but the first is scored once.

        Args:
            data: a path (text, JSONL, JSON, Parquet, Arrow or CSV file, a ``save_to_disk``
                folder, a directory of them, or ``"hf:NAME[:CONFIG[:SPLIT]]"``; see
                :mod:`logitscope.data.corpus`); a ``str`` is a path when it exists, starts with
                ``hf:``, or has no whitespace and a corpus suffix or a ``/`` (a missing one is an
                ``InputError``), else one document's text; an iterable of ``str`` (documents), a
                1-D integer tensor/array or iterable of ints (a token stream), or an iterable of
                id lists.
            max_tokens: stop after exactly this many scored tokens.
            seq_len: tokens per window (default 1024, capped at the model's context).
            batch_size: windows per forward, or ``"auto"`` (from free memory).
            ci: ``"bootstrap"`` (percentile, over windows) or ``"stderr"`` (normal approximation).
            confidence: CI level. n_boot: bootstrap resamples. seed: bootstrap seed.
            dist: a :class:`~logitscope.data.distributed.DistContext` to shard windows across ranks.
            progress: ``callback(tokens_done, total_estimate)`` after every batch.
            tuned: also evaluate this tuned lens (a :class:`~logitscope.tuned.TunedLens`, a folder
                or ``"demo"``) from the same forward passes; ``strict``: refuse a hash mismatch.
            jacobian: also evaluate this Jacobian lens (a :class:`~logitscope.jacobian.JacobianLens`,
                a file or ``"demo"``) from the same forward passes.

        Returns:
            :class:`~logitscope.evaluate.EvalResult`; with ``tuned`` and/or ``jacobian``, a
            :class:`~logitscope.evaluate.lens_comparison.LensComparison` (``.logit``, ``.tuned``, ``.jacobian``).
        """
        from .evaluate import run_eval

        with deferred(self):
            return run_eval(
                self, data, max_tokens=max_tokens, seq_len=seq_len, batch_size=batch_size, ci=ci, confidence=confidence,
                n_boot=n_boot, seed=seed, dist=dist, progress=progress, tuned=tuned, strict=strict, jacobian=jacobian,
            )  # fmt: skip

    def fit_jacobian_lens(self, prompts, **settings):
        """Fit a Jacobian lens (Gurnee et al. 2026) on ``prompts``: texts or token-id lists (one prompt
        each) or a corpus path; the settings (``skip_first=16``, ``max_seq_len=128``, ``dim_batch=8``,
        ``source_layers``, ``target_layer``, ``n_prompts``, ``out``, ``checkpoint``, ``resume``,
        ``save_every``, ``dist``, ``progress``, ``metadata``) are :func:`logitscope.jacobian.fit.fit`'s.

        Returns:
            :class:`~logitscope.jacobian.JacobianLens` (docs/jacobian_lens.md).
        """
        from .jacobian.fit import fit

        return fit(self, prompts, **settings)

    def train_lens(self, data, *, out=None, checkpoint=None, resume: bool = False, progress: bool = False, **settings):
        """Train a tuned lens (Belrose et al. 2023) for this model on ``data``; docs/tuned_lens.md.

        The loss is KL(final ‖ translated layer) at every position, backpropagated one layer at a
        time through the model's own (frozen) tail; nothing of shape layers × tokens × vocab is held.

        Args:
            data: what :meth:`evaluate` reads (a path, text, documents, token ids).
            out: write the lens there (tuned-lens layout + ``training_log.json``) when done.
            checkpoint: checkpoint file (default ``OUT.ckpt.pt``), written every ``save_every`` steps.
            resume: continue from ``checkpoint``.
            progress: show a rich progress bar with the per-layer loss.
            **settings: :class:`~logitscope.tuned.train.TrainConfig` fields: ``steps`` (250),
                ``tokens_per_step`` (2**18), ``seq_len``, ``lr`` (1.0), ``momentum`` (0.9),
                ``weight_decay`` (1e-3), ``warmup_steps`` (0), ``grad_clip`` (1.0), ``seed``,
                ``batch_size``, ``chunk_rows``, ``save_every`` (50); also ``lens=`` (start from
                it) and ``dist=`` (a :class:`~logitscope.data.distributed.DistContext`).

        Returns:
            :class:`~logitscope.tuned.TunedLens` (its ``training_log`` holds the per-step losses).
        """
        from .engine.check import deferred
        from .tuned.api import fit

        with deferred(self):  # a pending self-check rides along the first training forward
            return fit(self, data, out=out, checkpoint=checkpoint, resume=resume, progress=progress, **settings)
