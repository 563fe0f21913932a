"""Any lens through one engine: a row transform, then the model's own tail (the Lens protocol).

The oracle is the model itself: ``output_hidden_states`` rows (raw streams; HF normalises only the
last entry), transformed by the test's own formula, through the model's own final norm and head.
"""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch

from logitscope import Scope
from logitscope.engine.lens import LOGIT_LENS, Lens, LogitLens
from logitscope.errors import InputError, LensMismatchError
from logitscope.lens.select import lens_kind, pick_lens
from logitscope.tuned import TunedLens

IDS = [5, 17, 3, 44, 9, 71, 30, 2, 88, 61]


class RotateLens:
    """A made-up lens: ``h @ R^T`` at chosen stream rows, the kind of object a Jacobian lens is."""

    kind = "rotate"

    def __init__(self, d: int, rows: list[int], seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.R = {r: torch.linalg.qr(torch.randn(d, d, generator=g))[0] for r in rows}
        self.d = d
        self.calls: list[object] = []

    def describe(self) -> str:
        return "rotate test lens"

    def covers(self, row) -> bool:
        return row in self.R

    def transform(self, row, h):
        self.calls.append(row)
        return h @ self.R[row].T.to(h.dtype)

    def check_model(self, scope, *, strict: bool = True) -> None:
        if scope.model.config.hidden_size != self.d:
            raise LensMismatchError(f"made for width {self.d}")


def _oracle(model, ids, transform, rows):
    """float64 log-probs of tail(transform(row, h_row)) for ``rows`` (the last: the model's logits)."""
    tail = lambda h: model.lm_head(model.model.norm(h))  # noqa: E731 - the llama model's own tail
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
        got = [tail(transform(r, out.hidden_states[r][0])).double().log_softmax(-1) for r in rows[:-1]]
        got.append(out.logits[0].double().log_softmax(-1))
    return got


def test_protocol_members():
    assert isinstance(LOGIT_LENS, Lens) and isinstance(RotateLens(4, [1]), Lens)
    scope = Scope(tiny.build("llama"))
    assert isinstance(TunedLens.from_scope(scope), Lens)
    assert LogitLens().transform(0, torch.ones(2)) is not None
    assert not TunedLens.from_scope(scope).covers("1.attn")


def test_a_lens_object_is_a_row_transform_then_the_model_tail():
    model = tiny.build("llama")
    scope = Scope(model)
    lens = RotateLens(tiny.D, rows=[0, 2])
    res = scope.lens(IDS, lens=lens, track=[7])
    assert res.layer_names == ["embed", "2", str(tiny.L)]  # layers=None: the rows the lens covers + final
    assert res.meta["lens"] == "rotate" and res.meta["rotate_lens"] == "rotate test lens"
    assert tiny.L not in lens.calls  # the final row is the model's own output, never transformed
    want = _oracle(model, IDS, lambda r, h: h @ lens.R[r].T, [0, 2, tiny.L])
    for s, logp in enumerate(want):
        p = logp.exp()
        np.testing.assert_allclose(res.entropy[s], (-(p * logp).sum(-1)).numpy(), atol=2e-5, rtol=1e-5)
        kl = (want[-1].exp() * (want[-1] - logp)).sum(-1).numpy()
        np.testing.assert_allclose(res.kl_to_final[s], kl, atol=2e-5, rtol=1e-5)
        np.testing.assert_array_equal(res.top_ids[s, :, 0], logp.argmax(-1).numpy())
        np.testing.assert_allclose(res.tracked_probs[0, s], logp[:, 7].exp().numpy(), atol=1e-6, rtol=1e-5)


def test_full_logits_of_a_lens_match_its_statistics():
    scope = Scope(tiny.build("llama"))
    lens = RotateLens(tiny.D, rows=[1])
    full = scope.layer_logits(IDS, layers=[1, -1], lens=lens)
    res = scope.lens(IDS, layers=[1, -1], lens=lens)
    logp = full.logits.double().log_softmax(-1)
    np.testing.assert_allclose(res.entropy, (-(logp.exp() * logp).sum(-1)).numpy(), atol=2e-5)
    assert full.meta["lens"] == "rotate"


def test_rows_a_lens_does_not_cover_are_refused():
    scope = Scope(tiny.build("llama"))
    with pytest.raises(InputError, match="rotate lens 'rotate test lens' has no transform for layer 1"):
        scope.lens(IDS, lens=RotateLens(tiny.D, rows=[0]), layers=[0, 1])
    with pytest.raises(InputError, match="logit lens only"):
        scope.lens(IDS, lens=RotateLens(tiny.D, rows=[0]), sublayers=True)
    with pytest.raises(LensMismatchError, match="width"):
        scope.lens(IDS, lens=RotateLens(tiny.D + 1, rows=[0]))


def test_lens_and_tuned_are_one_argument(tmp_path):
    scope = Scope(tiny.build("llama"))
    lens = TunedLens.from_scope(scope)
    with torch.no_grad():
        for t in lens.translators:
            t.weight.normal_(0, 0.05)
    lens.save(tmp_path / "lens")
    by_tuned = scope.lens(IDS, tuned=lens)
    for other in (scope.lens(IDS, lens=lens), scope.lens(IDS, lens=tmp_path / "lens")):
        np.testing.assert_array_equal(other.entropy, by_tuned.entropy)
        assert other.meta["lens"] == "tuned"
    assert scope.lens(IDS, lens="logit").meta["lens"] == "logit"
    with pytest.raises(InputError, match="not both"):
        scope.lens(IDS, lens=lens, tuned=lens)
    with pytest.raises(InputError, match="lens= takes a lens object"):
        scope.lens(IDS, lens=3)


def test_a_lens_file_kind_is_read_from_its_contents(tmp_path):
    scope = Scope(tiny.build("llama"))
    TunedLens.from_scope(scope).save(tmp_path / "tuned")
    torch.save({"J": {1: torch.eye(tiny.D)}, "source_layers": [1], "d_model": tiny.D}, tmp_path / "j.pt")
    torch.save({"weights": torch.eye(2)}, tmp_path / "other.pt")
    (tmp_path / "notes.txt").write_text("hello")
    assert lens_kind(tmp_path / "tuned") == "tuned"
    assert lens_kind(tmp_path / "j.pt") == "jacobian"
    for bad in ("other.pt", "notes.txt"):
        with pytest.raises(InputError, match="not a lens logitscope can read"):
            lens_kind(tmp_path / bad)
    with pytest.raises(InputError, match="no lens at"):
        pick_lens(scope, lens=tmp_path / "missing.pt")
