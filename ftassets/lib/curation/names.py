"""A PERSON recognizer from name lists, for the names the small spaCy NER model misses.

en_core_web_sm (the only NER model reachable offline here) finds 64% of the PERSON spans in
presidio-research's synth_dataset_v2, and misses mostly non-English names ("Gyala Antall", "Impi
Nummelin", "Rościsław Dudek"). This recognizer marks capitalized words from the first- and
last-name lists of every locale the Faker package ships (MIT; ~31k first and ~29k last names in
86 locales, read from the installed package, nothing downloaded):

- two to four capitalized words in a row (spaces only between them), the first a known first
  name, the last a known first or last name: score 0.6 ("Tünde Hoffmann", "Mijail C Adomo");
- the same with an unknown last word: 0.45 ("Lina Artemova");
- one capitalized known name of 3+ letters that spaCy's tagger calls a proper noun, and not a
  weekday or month: 0.4 ("Natasja"). The tagger keeps out sentence-initial "Will it work?", "Mark
  the ticket", "Summer traffic", "Page the on-call", but not "Grant access", "Bill the customer",
  "Hope is not a plan": those get scrubbed as names.

Recall and precision on synth_dataset_v2, and what it changes on the bundled data and the release, are
in docs/figures.md (`benchmarks/pii_recall.py` re-measures them). On by default (scrub config
`name_lists`)."""

from __future__ import annotations

import re
from functools import lru_cache

PAIR_SCORE, FIRST_NAME_RUN_SCORE, SINGLE_NAME_SCORE = 0.6, 0.45, 0.4
UNKNOWN_PROPER_SCORE = 0.35
MIN_FOLDED = 3  # letters in a lowercase or all-capitals name word ("emma", "TAYLOR")
MAX_RUN = 4
PROPER_NOUN_TAGS = ("NNP", "NNPS")  # the tagger's proper nouns (spaCy's PROPN)
NOT_NAMES = frozenset(
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July "
    "August September October November December".split())
# A word: letters with inner apostrophes or hyphens ("O'Neil", "Jean-Luc"); or a one-letter initial.
WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*|(?<!\w)[A-Z]\.?(?=\s)")


@lru_cache(maxsize=1)
def name_lists() -> tuple[frozenset, frozenset]:
    """(first names, last names) of every person provider in the installed Faker package."""
    import importlib
    import pkgutil

    import faker.providers.person as person

    first, last = set(), set()
    for module in pkgutil.iter_modules(person.__path__):
        provider = getattr(importlib.import_module(f"{person.__name__}.{module.name}"), "Provider", None)
        for attr in ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary", "last_names"):
            names = vars(provider).get(attr, ()) if provider else ()
            if isinstance(names, (tuple, list, dict, set, frozenset)):
                (last if attr == "last_names" else first).update(n for n in names if isinstance(n, str))
    return frozenset(first), frozenset(last)


@lru_cache(maxsize=1)
def all_names() -> frozenset:
    first, last = name_lists()
    return first | last


def _titled(word: str) -> bool:
    """Capitalized, not all capitals (an acronym): 'Anna', 'C', 'O'Neil'; not 'API', 'anna'."""
    return word[0].isupper() and (len(word) == 1 or word[1:] != word[1:].upper())


class CommonWords(frozenset):
    """Lowercase English words; `in` also finds a regular inflection of one ("fridays", "skills",
    "strawberries", "volunteering", "lies"), which the lemma index lists only in its base form."""

    def __contains__(self, word) -> bool:
        has = super().__contains__
        return has(word) or any(has(base) for base in _bases(word))


def _bases(word: str):
    if word.endswith("'s"):
        yield word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        yield word[:-3] + "y"
    if len(word) > 3 and word.endswith("s"):
        yield word[:-1]
        yield word[:-2]
    if len(word) > 5 and word.endswith("ing"):
        yield from (word[:-3], word[:-3] + "e", word[:-4])
    if len(word) > 4 and word.endswith("ed"):
        yield from (word[:-2], word[:-1], word[:-3])


def common_words(nlp) -> frozenset:
    """Lowercase words of English that are not only names: the WordNet lemma index the spaCy pipeline's
    lemmatizer ships (nouns, verbs, adjectives, adverbs: "will", "mark", "grace", "hope", "rose") and
    its stop words. A name written in lowercase counts only when it is none of these."""
    words = set(nlp.Defaults.stop_words)
    if "lemmatizer" in nlp.component_names:
        lookups = nlp.get_pipe("lemmatizer").lookups
        if lookups.has_table("lemma_index"):
            index = lookups.get_table("lemma_index")
            for key in index.keys():
                words.update(index[key])
    return CommonWords(w.lower() for w in words)


def find_names(text: str, doc=None, common: frozenset = frozenset()) -> list[tuple[int, int, float]]:
    """(start, end, score) of each name found; `doc` is the text's spaCy Doc (its part-of-speech tags
    decide single words; without it single words are not reported). With `common` (common_words),
    names written all in lowercase or all in capitals count too ("emma", "justin bieber", "TAYLOR"),
    unless the word is a common English word."""
    first_names, last_names = name_lists()
    words = [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]
    found = _titled_names(text, words, doc, first_names, last_names, common)
    if common:
        found += _folded_names(text, words, first_names, last_names, common)
    return found


def _folded(word: str, common: frozenset, names) -> bool:
    """A lowercase or all-capitals word (not mixed) that is a known name and not a common word."""
    return (len(word) >= MIN_FOLDED and (word.islower() or word.isupper()) and word.lower() not in common
            and word.title() in names)


def _folded_names(text, words, first_names, last_names, common) -> list[tuple[int, int, float]]:
    """Runs of up to MAX_RUN lowercase/all-capitals name words: a known first name followed by known
    names is a PAIR ("emily rodriguez"), a first name alone a SINGLE ("emma"); a last name alone is
    not reported (too many are places and words in other languages)."""
    names = all_names()
    found, i = [], 0
    while i < len(words):
        if not _folded(words[i][0], common, first_names):
            i += 1
            continue
        j = i
        while (j + 1 < len(words) and j - i + 1 < MAX_RUN and _folded(words[j + 1][0], common, names)
               and set(text[words[j][2]:words[j + 1][1]]) <= {" "}):
            j += 1
        found.append((words[i][1], words[j][2], PAIR_SCORE if j > i else SINGLE_NAME_SCORE))
        i = j + 1
    return found


def _titled_names(text, words, doc, first_names, last_names, common) -> list[tuple[int, int, float]]:
    found, i = [], 0
    while i < len(words):
        if not _titled(words[i][0]):
            i += 1
            continue
        j = i
        while (j + 1 < len(words) and j - i + 1 < MAX_RUN and _titled(words[j + 1][0])
               and set(text[words[j][2]:words[j + 1][1]]) <= {" "}):
            j += 1
        run = [w for w, _, _ in words[i:j + 1]]
        start, end = words[i][1], words[j][2]
        score = _score(run, first_names, last_names, doc, start, end, common) or _unknown_proper(run, doc, start, end, common)
        if score:
            found.append((start, end, score))
        # A run that is no name may hold one after its first word ("Thanks Emily"): scan again from there.
        i = j + 1 if score or j == i else i + 1
    return found


def _score(run: list[str], first_names, last_names, doc, start: int, end: int, common: frozenset) -> float:
    first, last = run[0].rstrip("."), run[-1]
    if len(last) < 2 or any(w in NOT_NAMES for w in run):
        return 0.0
    if len(run) >= 2 and first in first_names:
        return PAIR_SCORE if last in last_names or last in first_names else FIRST_NAME_RUN_SCORE
    if len(run) == 1 and len(first) >= 3 and (first in first_names or first in last_names) and doc is not None:
        span = doc.char_span(start, end, alignment_mode="expand")
        if span is None:
            return 0.0
        if common and first.lower() not in common:  # not a word: the tag is not needed ("Emily" first in a line)
            return SINGLE_NAME_SCORE
        if all(token.tag_ in PROPER_NOUN_TAGS for token in span):
            return SINGLE_NAME_SCORE
    return 0.0


def _unknown_proper(run: list[str], doc, start: int, end: int, common: frozenset) -> float:
    """A capitalized run that is in no name list but reads as a name: every word a proper noun to the
    tagger and none an English word ("Kimmel", "Nightwing", "LeBron"), and not followed by a number
    (a product and its version: "Postgres 16", "Windows 11"). The NER's own label is no veto: it
    calls many names ORG, and vetoing them cost 0.04 of WNUT17 dev recall; a data folder lists its
    product names in the scrub allow list instead."""
    if not common or doc is None or any(w.lower() in common or w in NOT_NAMES or len(w) < 3 for w in run):
        return 0.0
    span = doc.char_span(start, end, alignment_mode="expand")
    if span is None or any(t.tag_ not in PROPER_NOUN_TAGS for t in span):
        return 0.0
    if span.end < len(doc) and doc[span.end].like_num:
        return 0.0
    return UNKNOWN_PROPER_SCORE


def recognizer(common: frozenset = frozenset()):
    """The Presidio recognizer (PERSON, English) over `find_names`; `common` as find_names takes it."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class NameListRecognizer(EntityRecognizer):
        def load(self) -> None:
            name_lists()

        def analyze(self, text, entities, nlp_artifacts=None):
            doc = getattr(nlp_artifacts, "tokens", None)
            return [RecognizerResult("PERSON", start, end, score,
                                     recognition_metadata={"recognizer_name": self.name,
                                                           "recognizer_identifier": self.id})
                    for start, end, score in find_names(text, doc, common)]

    return NameListRecognizer(supported_entities=["PERSON"], name="NameListRecognizer", supported_language="en")
