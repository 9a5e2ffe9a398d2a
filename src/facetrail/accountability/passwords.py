"""Which passwords an account may have: long enough, not containing the username, not a common password in trivial
disguise, and not guessable by zxcvbn's estimate.

The common passwords are zxcvbn's own bundled list (``zxcvbn.frequency_lists``: the 30,000 most frequent passwords
of the Xato corpus of ten million leaked passwords, the list zxcvbn ships and maintains), so the check works offline
and adds no dependency. zxcvbn alone scores ``Summer2024!!`` as safe (3 of 4): a common word, a year and some
punctuation look like three guesses' worth of entropy to it. Here a password is refused when, case ignored, what is
left after stripping trivial decorations (digits, punctuation and spaces before and after it, which covers years and
a season or month followed by a year) is a common password, a season or a month, or one of those with the usual
letter-for-symbol swaps (``p@ssw0rd``).
"""

from __future__ import annotations

import functools
import re

from facetrail.errors import AccountabilityError

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MIN_PASSWORD_SCORE = 3
"""The least zxcvbn score (0-4) a password needs: 3 is 'safely unguessable: moderate protection from offline
slow-hash scenarios'."""
SEASONS_AND_MONTHS = frozenset(
    "spring summer autumn fall winter january february march april may june july august september october november "
    "december jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
_DECORATIONS = re.compile(r"^[\W\d_]+|[\W\d_]+$")
"""Digits, punctuation and spaces at either end of a password."""
_UNSWAPPED = str.maketrans({"@": "a", "4": "a", "0": "o", "1": "i", "!": "i", "3": "e", "$": "s", "5": "s", "7": "t"})
"""The usual symbol-for-letter swaps, undone."""


@functools.cache
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"]) | SEASONS_AND_MONTHS


def common_core(password: str) -> str | None:
    """The common password (or season or month) that ``password`` is, give or take case, symbol swaps and trivial
    decorations at either end; None when it is none of them."""
    folded = password.casefold().strip()
    common = _common_passwords()
    for candidate in (folded, _DECORATIONS.sub("", folded)):
        for form in (candidate, _DECORATIONS.sub("", candidate.translate(_UNSWAPPED))):
            if form and form in common:
                return form
    return None


def check_password(password: str, username: str = "", display_name: str = "") -> None:
    """Refuse (AccountabilityError, saying why) a password of the wrong length, one containing the username, a common
    password in trivial disguise (``common_core``), and one that zxcvbn's bundled lists of common passwords, words,
    names and keyboard patterns make guessable."""
    from zxcvbn import zxcvbn

    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise AccountabilityError(
            f"a password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters (got {len(password)})"
        )
    if username and username.casefold() in password.casefold():
        raise AccountabilityError("a password may not contain the username")
    core = common_core(password)
    if core is not None:
        raise AccountabilityError(f"this password is a common password ({core!r}) with only digits, punctuation or "
                                  "case changed around it: choose a passphrase of several unrelated words")
    strength = zxcvbn(password[:100], user_inputs=[part for part in (username, display_name, "facetrail") if part])
    if strength["score"] < MIN_PASSWORD_SCORE:
        advice = " ".join(filter(None, [strength["feedback"].get("warning"), *strength["feedback"].get("suggestions", [])]))
        raise AccountabilityError(f"this password is too easy to guess (common words, names, dates or patterns)"
                                  f"{': ' + advice if advice else ''}")
