"""Names outside message text: record ids, source folder and file names, `reviewed_by`.

They travel further than the text does. They end up in curated files, `quarantine.jsonl`, Dagster
metadata, partition keys, lineage and logs, and none of that is ever scrubbed. So each such value is
checked before it is recorded. A value that holds PII is replaced by a stable hash of itself
(`pii-` and 12 hex digits), and every other value is kept as written.

The same value always gives the same hash, so ids stay unique, a frozen test set's lock still
matches, and a renamed file still reads as the same source. The hash is not keyed: whoever guesses
the exact value can confirm the guess, but no value can be read back from it.

What counts as PII here (cheap enough to run per record, no NLP model needed):
- Presidio's pattern recognizers: e-mail, credit card (Luhn), IBAN, US SSN, IP address, and phone
  numbers through `phonenumbers`;
- nine or more digits once separators are removed (a phone or account number in an id);
- a person's name from the name lists (`names.py`), in any case, with `_`, `-` and `.` read as spaces
  ("anna_schmidt", "Bartholomew Kowalczyk"): a listed first name followed by a listed name always,
  a lone listed name when it is no English word.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

PREFIX = "pii-"
HASH_CHARS = 12
LONG_DIGITS = re.compile(r"\d(?:[\s().+-]?\d){8,}")
SEPARATORS = re.compile(r"[_\-.+/\\]+")
FILE_SUFFIX = re.compile(r"\.(?:gz|jsonl|json|meta|yaml|yml)$")  # kept as written: what the file is, not whose
MIN_SCORE = 0.4  # Presidio's scores without context: e-mail 1.0, IBAN/card 1.0, IP 0.6, phone 0.4, SSN 0.5


def hashed(value: str) -> str:
    return PREFIX + hashlib.sha256(value.encode("utf-8")).hexdigest()[:HASH_CHARS]


@lru_cache(maxsize=65536)
def safe(value: str) -> str:
    """`value`, or its stable hash when it holds PII."""
    if not value or value.startswith(PREFIX) or not holds_pii(value):
        return value
    return hashed(value)


def safe_path(path: str) -> str:
    """A relative path ('raw/<source>/<file>.jsonl') with each part made `safe`, keeping file suffixes."""
    return "/".join(_safe_file_name(part) for part in path.replace("\\", "/").split("/"))


def _safe_file_name(name: str) -> str:
    base, suffixes = name, ""
    while (match := FILE_SUFFIX.search(base)) and match.start() > 0:
        base, suffixes = base[:match.start()], match.group() + suffixes
    return safe(base) + suffixes


def holds_pii(value: str) -> bool:
    if LONG_DIGITS.search(value):
        return True
    if any(r.score >= MIN_SCORE for r in _analyze(value)):
        return True
    from ftassets.lib.curation.names import find_names, name_lists

    words = SEPARATORS.sub(" ", value)
    if find_names(words, None, _common()):
        return True
    # a first and a last name side by side, even where each is also a word ("maria_garcia": lunar maria)
    first, last = name_lists()
    titled = [w.title() for w in words.split()]
    return any(a in first and (b in last or b in first) for a, b in zip(titled, titled[1:]))


def _analyze(value: str) -> list:
    return [result for recognizer in _recognizers()
            for result in recognizer.analyze(value, entities=list(recognizer.supported_entities), nlp_artifacts=None)]


@lru_cache(maxsize=1)
def _recognizers() -> tuple:
    from ftassets.lib.curation.pii import offline_tldextract

    offline_tldextract()  # the e-mail recognizer's domain check, on the packaged suffix list only
    from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer, IbanRecognizer,
                                                          IpRecognizer, PhoneRecognizer, UsSsnRecognizer)

    return (EmailRecognizer(), CreditCardRecognizer(), IbanRecognizer(), UsSsnRecognizer(), IpRecognizer(),
            PhoneRecognizer())


@lru_cache(maxsize=1)
def _common() -> frozenset:
    """English words (names.common_words) from the spaCy package's lemmatizer tables, loaded without
    its neural components."""
    import spacy

    from ftassets.lib.curation.names import common_words
    from ftassets.lib.curation.pii import DEFAULT_SPACY_MODEL

    nlp = spacy.load(DEFAULT_SPACY_MODEL, exclude=["tok2vec", "tagger", "parser", "ner", "senter"])
    return common_words(nlp)

