"""The text PII detection reads, with every character mapped back to where it came from.

Obfuscated PII defeats recognizers written for plain text: a soft hyphen or zero-width space inside
an e-mail address, full-width digits, `name [at] host [dot] com`, a card number with a space between
every digit. Detection therefore runs on a normalised copy, and each finding is mapped back to the
original span, which is what gets replaced (the hidden characters go with it):

1. format characters (Unicode category Cf: zero-width spaces and joiners, soft hyphens, BOMs,
   direction marks) are dropped, and every other character is NFKC-normalised (full-width and
   other compatibility forms become plain ones);
2. a spelled-out `at` / `dot` in an e-mail address becomes `@` / `.`: bracketed anywhere
   (`[at]`, `(dot)`, `{at}`), bare only inside a `local at host dot tld` shape;
3. a run of single digits with a space between each (nine or more digits) is closed up.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

BRACKETED = re.compile(r"\s*[\[({<]\s*(at|dot)\s*[\])}>]\s*", re.IGNORECASE)
BARE_EMAIL = re.compile(r"(?<![\w.])[\w+-]+(?:\s+dot\s+[\w+-]+)*\s+at\s+[\w-]+(?:\s+dot\s+[\w-]+)+\b", re.IGNORECASE)
BARE_WORD = re.compile(r"\s+(at|dot)\s+", re.IGNORECASE)
SPACED_DIGITS = re.compile(r"(?<![\d ])\d(?: \d){8,}(?![\d])")
SYMBOL = {"at": "@", "dot": "."}


@dataclass(frozen=True)
class Normalised:
    """`text` and, per character of it, the [start, end) of the original characters it stands for."""

    text: str
    starts: tuple[int, ...] | None  # None: the text is its own original (nothing changed)
    ends: tuple[int, ...] | None

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        if self.starts is None or end <= start:
            return start, end
        return self.starts[start], self.ends[end - 1]


def normalise(text: str) -> Normalised:
    needs_unicode = not text.isascii()
    if not needs_unicode and not _may_rewrite(text):
        return Normalised(text, None, None)
    chars: list[tuple[str, int, int]] = []
    for i, char in enumerate(text):
        if needs_unicode:
            if unicodedata.category(char) == "Cf":
                continue
            for piece in unicodedata.normalize("NFKC", char):
                chars.append((piece, i, i + 1))
        else:
            chars.append((char, i, i + 1))
    chars = _rewrite(chars)
    return Normalised("".join(c for c, _, _ in chars), tuple(s for _, s, _ in chars), tuple(e for _, _, e in chars))


def _may_rewrite(text: str) -> bool:
    lowered = text.lower()
    return (" at " in lowered or (("at" in lowered or "dot" in lowered) and BRACKETED.search(text) is not None)
            or SPACED_DIGITS.search(text) is not None)


def _rewrite(chars: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Apply the rewrites of steps 2 and 3 on (char, start, end) triples, merging the origins of what
    a rewrite replaces into the character that replaces it."""
    for pattern, replace in ((BRACKETED, _symbol), (BARE_EMAIL, _bare_email), (SPACED_DIGITS, _close_up)):
        text = "".join(c for c, _, _ in chars)
        out, last = [], 0
        for match in pattern.finditer(text):
            out.extend(chars[last:match.start()])
            out.extend(replace(match, chars[match.start():match.end()]))
            last = match.end()
        chars = out + chars[last:] if out or last else chars
    return chars


def _merged(char: str, span: list[tuple[str, int, int]]) -> tuple[str, int, int]:
    return char, span[0][1], span[-1][2]


def _symbol(match: re.Match, span):
    return [_merged(SYMBOL[match.group(1).lower()], span)]


def _bare_email(match: re.Match, span):
    out, last = [], 0
    for word in BARE_WORD.finditer(match.group()):
        out.extend(span[last:word.start()])
        out.append(_merged(SYMBOL[word.group(1).lower()], span[word.start():word.end()]))
        last = word.end()
    return out + span[last:]


def _close_up(match: re.Match, span):
    return [c for c in span if c[0] != " "]
