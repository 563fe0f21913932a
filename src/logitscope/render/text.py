"""Token text for display: whitespace made visible, long tokens shortened.

``LensResult.tokens`` are already decoded by the tokenizer (``"Ġquick"`` is ``" quick"``,
``"Ċ"`` is ``"\\n"``); these helpers only make the invisible parts of them visible.
"""

from __future__ import annotations

import re

SPACE = "\u2423"  # ␣
_SPECIAL = {"\n": "\u23ce", "\t": "\u21e5", "\r": "\\r"}  # ⏎ ⇥


def visible(text: str, *, space: str | None = SPACE) -> str:
    """Make whitespace and control characters in a token visible.

    Args:
        text: a decoded token, e.g. ``" quick"`` or ``"\\n"``.
        space: what a space becomes (``None`` keeps spaces as they are).

    Returns:
        ``" quick"`` → ``"␣quick"``, ``"\\n"`` → ``"⏎"``, ``"\\t"`` → ``"⇥"``, ``""`` → ``"∅"``;
        other non-printable characters become ``\\xNN`` escapes.
    """
    if text == "":
        return "\u2205"  # ∅
    out = []
    for ch in text:
        if ch == " " and space is not None:
            out.append(space)
        elif ch in _SPECIAL:
            out.append(_SPECIAL[ch])
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def shorten(text: str, max_chars: int | None) -> str:
    """Cut ``text`` to at most ``max_chars`` characters, ending in ``…`` when cut."""
    if max_chars is None or len(text) <= max_chars:
        return text
    cut = max(max_chars - 1, 1)
    start = text.rfind("<", 0, cut)  # never cut a partial-byte group (<0xE4>) in half
    if 0 < start < cut < start + 6 and re.match(r"<0x[0-9A-F]{2}>", text[start : start + 6]):
        cut = start
    return text[:cut] + "\u2026"


def label(text: str, max_chars: int | None = None, *, space: str | None = SPACE) -> str:
    """``shorten(visible(text))``: the label of a token in a table cell or on an axis."""
    return shorten(visible(text, space=space), max_chars)
