"""Text compared as a reader sees it, so that look-alike characters cannot slip past a rule.

``clean`` is how a value that a rule applies to is kept: Unicode NFKC (full-width and other compatibility forms
become plain letters and digits), invisible characters removed (zero-width spaces and joiners, direction marks, soft
hyphens, Hangul fillers), surrounding whitespace stripped. ``fold`` is how such text is compared: cleaned,
case-folded, without combining marks (accents), and reduced to its Unicode TR39 skeleton, in which characters that
look alike are one (Cyrillic о and Latin o, 0 and O, 1 and l, rn and m): two texts a reader could take for one
another fold to the same string. ``imitation`` finds a character that only looks like a plain ASCII one.

The look-alike pairs are those of Unicode's confusables.txt as the ``confusable_homoglyphs`` package ships them. It
keeps them as a symmetric table (each character with the characters it is confused with) and has no skeleton
function, so ``_prototypes`` reads each character's TR39 prototype back from the table.
"""

from __future__ import annotations

import functools
import unicodedata

from confusable_homoglyphs.confusables import confusables_data

INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
"""Hangul fillers: letters by category, but default-ignorable (drawn as nothing)."""


def clean(text: str) -> str:
    """``text`` in NFKC, without invisible characters (format characters, Hangul fillers), stripped."""
    normal = unicodedata.normalize("NFKC", text)
    return "".join(c for c in normal if unicodedata.category(c) != "Cf" and c not in INVISIBLE_LETTERS).strip()


def fold(text: str) -> str:
    """The form in which ``text`` is compared: cleaned, without combining marks, each character as ``_folded``."""
    return "".join(_folded(c) for c in _without_marks(clean(text)))


def imitation(text: str) -> str | None:
    """The first character of ``text`` that is not ASCII but looks like ASCII (Cyrillic А, Greek Ο...), or None."""
    prototypes = _prototypes()
    return next((c for c in text if not c.isascii() and prototypes.get(c, c).isascii()), None)


def describe(char: str) -> str:
    """A character named for a message: ``'А' (CYRILLIC CAPITAL LETTER A), which looks like 'A'``."""
    looks_like = _prototypes().get(char, char)
    return f"{char!r} ({unicodedata.name(char, f'U+{ord(char):04X}')}), which looks like {looks_like!r}"


@functools.lru_cache(maxsize=4096)
def _folded(char: str) -> str:
    """One character case-folded and reduced to its TR39 prototype. The prototypes keep case (capital I looks like
    l; Cyrillic Н like H, its small н not like h), so the small letter's prototype is taken when it is plain ASCII
    (I → i), else the prototype's small letter (Н → H → h)."""
    small_first = _skeleton(char.casefold()).casefold()
    return small_first if small_first.isascii() else _skeleton(_skeleton(char).casefold()).casefold()


def _skeleton(text: str) -> str:
    """Each character replaced by its TR39 prototype, without the combining marks that leaves."""
    prototypes = _prototypes()
    return _without_marks("".join(prototypes.get(c, c) for c in text))


def _without_marks(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.category(c).startswith("M"))


@functools.cache
def _prototypes() -> dict[str, str]:
    """Each character's TR39 prototype, read from confusable_homoglyphs' symmetric table.

    confusables.txt maps single characters (sources) to prototypes, and a prototype is never a source. So a
    character linked to several others is a prototype (it stands for itself); one linked to a multi-character string
    or to a prototype is a source of it. Two characters linked only to each other are a pair whose direction the
    table does not keep: both stand for the lower code point (ASCII, where one is), which compares them alike just
    the same.
    """
    prototypes = {}
    for char, links in confusables_data.items():
        if len(char) != 1 or len(links) != 1:
            continue
        other = links[0]["c"]
        if len(other) > 1 or len(confusables_data.get(other, ())) > 1:
            prototypes[char] = other
        else:
            prototypes[char] = min(char, other)
    return prototypes
