"""Display strings for tokens that hold only part of a UTF-8 character.

Byte-level BPE (GPT-2, the demo model) and SentencePiece byte fallback (``<0xE2>`` pieces) split
Chinese, Arabic or emoji characters over several tokens. Decoded alone, such a token is U+FFFD
("�"), so a prompt becomes a row of identical "�". :func:`readable` shows the token's own bytes
instead: the complete characters as text, every byte of an incomplete one as ``<0xNN>``
(``" 你"`` stays ``" 你"``; the first two bytes of ``"你"`` read ``<0xE4><0xBD>``).
"""

from __future__ import annotations

import re
from functools import lru_cache

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted (``"Ġ"`` → 0x20)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, n = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars)}


def piece_bytes(piece) -> bytes | None:
    """The raw bytes a vocabulary piece stands for, or ``None`` when the piece is not byte-coded."""
    if not isinstance(piece, str) or not piece:
        return None
    m = _BYTE_PIECE.match(piece)
    if m:
        return bytes([int(m.group(1), 16)])
    table = _byte_decoder()
    if all(c in table for c in piece):
        return bytes(table[c] for c in piece)
    return None


def readable(data: bytes) -> str:
    """``data`` as text, with each byte that is not part of a complete UTF-8 character as ``<0xNN>``."""
    out, i = [], 0
    while i < len(data):
        try:
            out.append(data[i:].decode("utf-8"))
            break
        except UnicodeDecodeError as err:
            good = data[i : i + err.start].decode("utf-8")
            out.append(good)
            bad = data[i + err.start : i + err.end]
            out.append("".join(f"<0x{b:02X}>" for b in bad))
            i += err.end
    return "".join(out)


def token_text(text: str, piece) -> str:
    """The display string of one token: its decoded ``text``, unless decoding alone produced U+FFFD
    that the token's own bytes do not hold (a partial character), then :func:`readable` bytes."""
    if "\ufffd" not in text:
        return text
    raw = piece_bytes(piece)
    if raw is None:
        return text
    shown = readable(raw)
    return shown if "<0x" in shown else text
