"""Words for people: a count and its noun in agreement ("1 person", "2 people", "1 frame", "0 frames").

Every message that states a count goes through :func:`count`, so no front says "1 people" or
"1 alerts" and none needs "alert(s)".
"""

from __future__ import annotations

#: Nouns whose plural is not the noun plus "s" (the last word of a phrase decides).
IRREGULAR_PLURALS = {"person": "people", "box": "boxes", "match": "matches"}


def plural(noun: str) -> str:
    """The plural of ``noun``, a word or a phrase whose last word is the noun (``"unmasked alert"``)."""
    head, _, last = noun.rpartition(" ")
    word = IRREGULAR_PLURALS.get(last, last + "s")
    return f"{head} {word}" if head else word


def count(n: int, noun: str, plural_form: str | None = None) -> str:
    """``n`` followed by ``noun``, singular for exactly one, plural otherwise.

    Args:
        n: how many.
        noun: the singular noun or phrase (``"frame"``, ``"person"``, ``"unmasked alert"``).
        plural_form: the plural when it is neither regular nor in :data:`IRREGULAR_PLURALS`.

    Example:
        >>> count(1, "person"), count(2, "person"), count(0, "frame"), count(1, "unmasked alert")
        ('1 person', '2 people', '0 frames', '1 unmasked alert')
    """
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {plural_form or plural(noun)}"
