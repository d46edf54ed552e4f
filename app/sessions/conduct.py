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


class _Gaps(dict[int, int | None]):
    """A `str.translate` table that drops gap characters, each character's category looked up
    once (bounded: past the limit a character is looked up each time it occurs)."""

    LIMIT = 20_000

    def __missing__(self, code: int) -> int | None:
        kept = None if unicodedata.category(chr(code)).startswith(_GAP_CATEGORIES) else code
        if len(self) < self.LIMIT:
            self[code] = kept
        return kept


_GAPS = _Gaps()


def squeeze(text: str) -> str:
    """The text without spaces, punctuation, symbols, control characters or combining marks."""
    return text.translate(_GAPS)


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


@dataclass(frozen=True, slots=True)
class Screen:
    """A list's entries joined into few patterns, so that a clean message, nearly every message,
    is cleared by few searches instead of one per entry. It only clears; a text it does not clear
    is sought entry by entry.

    - The squeezed entries (the Chinese literals, most of a list) are escaped literals: one
      pattern of them all finds what each would.
    - The regular expressions that start at a word boundary (`\\b`) are joined behind a single
      `\\b`: the search stops at once at every position that is not a boundary, instead of each
      expression being tried there. (Joined without that, expressions are tried at every
      position with no literal to skip to, which is slower than searching for each alone.)
    - The rest (Latin words, which start with a literal, and other expressions) are sought one by
      one."""

    squeezed: re.Pattern[str] | None
    bounded: re.Pattern[str] | None
    spaced: tuple[Term, ...]

    @classmethod
    def of(cls, terms: Sequence[Term]) -> "Screen":
        literals = [t.pattern.pattern for t in terms if t.in_squeezed]
        bounded = [t for t in terms if not t.in_squeezed and _joinable_at_boundary(t)]
        rests = "|".join(f"(?:{t.pattern.pattern.removeprefix(_BOUNDARY)})" for t in bounded)
        return cls(
            re.compile("|".join(literals)) if literals else None,
            re.compile(f"{_BOUNDARY}(?:{rests})", re.IGNORECASE) if bounded else None,
            tuple(t for t in terms if not t.in_squeezed and t not in bounded),
        )

    def clears(self, spaced: str, squeezed: str) -> bool:
        """True when no entry of the list can match this text."""
        if self.squeezed is not None and self.squeezed.search(squeezed):
            return False
        if self.bounded is not None and self.bounded.search(spaced):
            return False
        return not any(t.pattern.search(spaced) for t in self.spaced)


_BOUNDARY = r"\b"
# An expression that refers to its own groups (by number, by name, or in a condition) would refer
# to other groups once joined; such an entry is sought on its own.
_GROUP_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")


def _joinable_at_boundary(term: Term) -> bool:
    source = term.pattern.pattern
    return (
        source.startswith(_BOUNDARY)
        and term.pattern.flags & re.IGNORECASE != 0
        and not _GROUP_REFERENCE.search(source)
        and not _alternates_at_top(source)
    )


def _alternates_at_top(source: str) -> bool:
    """Whether the expression has a `|` outside every group (`\\ba|b` is not `\\b(?:a|b)`)."""
    depth, in_class, at = 0, False, 0
    while at < len(source):
        ch = source[at]
        if ch == "\\":
            at += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            # A "]" first in a class (after any "^") is a literal, not its end.
            at += 1 + (source[at + 1 : at + 2] == "^")
            at += source[at : at + 1] == "]"
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return True
        at += 1
    return False


@cache
def _screened() -> tuple[tuple[Term, ...], Screen]:
    terms = load_terms(TERMS_FILE)
    return terms, Screen.of(terms)


def matching_terms(text: str, terms: Sequence[Term], screen: Screen | None = None) -> list[str]:
    """The entries of `terms` found in the text, in their order, each once (`screen`, made from
    the same terms, clears a clean text at once)."""
    spaced = normalise(text)
    squeezed = squeeze(spaced)
    if screen is not None and screen.clears(spaced, squeezed):
        return []
    found = (t.entry for t in terms if t.pattern.search(squeezed if t.in_squeezed else spaced))
    return list(dict.fromkeys(found))


def flagged_terms(text: str) -> list[str]:
    """The list entries that match the text (as written in the list), in list order, without
    repeats; [] when clean."""
    terms, screen = _screened()
    return matching_terms(text, terms, screen)
