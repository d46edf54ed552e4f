"""Threats and abusive collection language (暴力催收) in what bank staff write in the room.

The session service calls `flagged_terms` on each bank message and offer note; a message with any
flagged term is held for the mediator instead of delivered. The words themselves live in
abusive_terms.txt, which compliance staff maintain; its header explains the format.
"""

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TERMS_FILE = Path(__file__).with_name("abusive_terms.txt")

_REGEX_PREFIX = "re:"
# Removed from the text before literal terms are sought: separators (Z), punctuation (P),
# symbols (S), control and format characters such as zero-width spaces (C), and combining marks
# (Mn, Me) used to strike through or decorate letters.
_GAP_CATEGORIES = ("Z", "P", "S", "C", "Mn", "Me")
_LATIN_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Term:
    """One entry of the list: the line as written and how it is sought."""

    entry: str
    pattern: re.Pattern[str]
    # True: sought in the text with gaps removed; False: in the text with its gaps kept.
    in_squeezed: bool


def normalise(text: str) -> str:
    """Full-width to half-width and other compatibility forms (NFKC), then case-folded."""
    return unicodedata.normalize("NFKC", text).casefold()


def squeeze(text: str) -> str:
    """The text without spaces, punctuation, symbols, control characters or combining marks."""
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith(_GAP_CATEGORIES))


def _literal(entry: str) -> Term:
    word = squeeze(normalise(entry))
    if not word:
        raise ValueError("has no letters left once spaces and punctuation are removed")
    if _LATIN_WORD.fullmatch(word):
        # Latin words are sought whole, letter by letter with any gaps between, in the spaced
        # text: "J A I L" and "jail!" are caught, "mail" and "skill" are not; the price is that
        # "jailbreak" and "killed" need their own entries. The first letter comes before the
        # check that no letter precedes it (the same condition): a pattern that starts with a
        # literal is sought by a fast scan for that letter, one that starts with a lookbehind
        # is tried at every position (4-7x slower over a list's Latin words).
        first, rest = word[0], word[1:]
        gapped = "".join(rf"[\W_]*{re.escape(ch)}" for ch in rest)
        pattern = rf"{first}(?<![a-z0-9]{first}){gapped}(?![a-z0-9])"
        return Term(entry, re.compile(pattern), in_squeezed=False)
    # Chinese has no spaces between words, so a literal is any run of the squeezed text.
    return Term(entry, re.compile(re.escape(word)), in_squeezed=True)


def _regex(entry: str) -> Term:
    try:
        pattern = re.compile(entry.removeprefix(_REGEX_PREFIX), re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc}") from None
    if pattern.search("") is not None:
        # e.g. a stray "|" at the end: it would hold back every message.
        raise ValueError("matches an empty message")
    return Term(entry, pattern, in_squeezed=False)


def load_terms(path: Path) -> tuple[Term, ...]:
    """Parse a terms file; ValueError names the line of a bad entry."""
    terms: list[Term] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            terms.append(_regex(entry) if entry.startswith(_REGEX_PREFIX) else _literal(entry))
        except ValueError as exc:
            raise ValueError(f"{path.name} line {number}: {entry!r} {exc}") from None
    return tuple(terms)


@cache
def _terms() -> tuple[Term, ...]:
    return load_terms(TERMS_FILE)


def matching_terms(text: str, terms: Sequence[Term]) -> list[str]:
    """The entries of `terms` found in the text, in their order, each once."""
    spaced = normalise(text)
    squeezed = squeeze(spaced)
    found = (t.entry for t in terms if t.pattern.search(squeezed if t.in_squeezed else spaced))
    return list(dict.fromkeys(found))


def flagged_terms(text: str) -> list[str]:
    """The list entries that match the text (as written in the list), in list order, without
    repeats; [] when clean."""
    return matching_terms(text, _terms())
