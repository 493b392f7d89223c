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

Real user text names people the Faker lists do not hold ("kapil", "krithika", "themba"), so the first
names of nomquamgender (MIT; name-gender tables of 36 sources from many countries, its data file read
from the installed package) are added where CONSENSUS_SOURCES sources list the name, CONSENSUS_COUNT
people carry it and the sources mostly agree on its gender. That table also holds noise ("the",
"imma", "admin", "repo"): its names never count when they are English words, and the source count and
gender agreement keep most of the rest out. Further rules for chat text:

- after a greeting ("hey tanner", "Thank you, Grace", "thanks obama") the next word is a name when it
  is a listed first name (even an English word) or no English word at all;
- after a title ("Dr. Cox", "Mrs Okafor") a capitalized word is a name;
- a listed first name that is also a word counts when capitalized right after a lowercase word
  ("a lot Tanner and"): no sentence start explains the capital;
- a capitalized run that is no name is cut to its longest leading part that is ("Emily I" -> "Emily"),
  only where that part holds a word that is no English word and only English words are cut off.

Edited prose is not chat: the spaCy lemmatizer's irregular forms count as English words ("met",
"shone", "media"), and a word taken from inside a longer capitalized run ("Los" or "Angeles" of "Los
Angeles", "Microsoft" of "Microsoft Bot Framework") is dropped when the NER labels it a place,
organisation, nationality, work or date.

Recall, precision and throughput on WNUT17 and synth_dataset_v2, and what each rule moved, are in
docs/measured.md (`benchmarks/pii_recall.py` re-measures them). On by default (scrub config
`name_lists`)."""

from __future__ import annotations

import re
from functools import lru_cache

from spacy.lang.en.stop_words import STOP_WORDS

PAIR_SCORE, FIRST_NAME_RUN_SCORE, SINGLE_NAME_SCORE = 0.6, 0.45, 0.4
UNKNOWN_PROPER_SCORE = 0.35
MIN_FOLDED = 3  # letters in a lowercase or all-capitals name word ("emma", "TAYLOR")
MAX_RUN = 4
# nomquamgender first names kept: 4+ sources (3 let in "admin", "repo", "json"), 10+ people, and
# p(female) <= 0.2 or >= 0.8 (nomquamgender classifies at 0.1; 0.2 found 4 more WNUT17 dev names and
# the same WNUT17 train recall, chosen on those dev sets as issue 21 asks).
CONSENSUS_SOURCES, CONSENSUS_COUNT, CONSENSUS_UNCERTAINTY = 4, 10, 0.2
# A capitalized word after a title is a name ("Dr. Cox", "Mrs Okafor"); the title stays in the text.
TITLED = re.compile(r"\b(?:Dr|Mr|Mrs|Ms|Mx|Prof|Sir)\s?\.?\s+([A-Z][^\W\d_]+(?:['’-][^\W\d_]+)*(?: [A-Z][^\W\d_]+)?)")
GREETINGS = frozenset("hey hi hello hiya heya dear thanks thank thx ty bye goodbye congrats congratulations "
                      "welcome yo".split())
PROPER_NOUN_TAGS = ("NNP", "NNPS")  # the tagger's proper nouns (spaCy's PROPN)
NOT_NAMES = frozenset(
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July "
    "August September October November December".split())
NOT_PERSON_ENTITIES = frozenset("GPE LOC ORG FAC NORP PRODUCT EVENT WORK_OF_ART LAW LANGUAGE DATE".split())
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
def consensus_names() -> frozenset:
    """Title-cased first names from nomquamgender's table (see the module docstring for the filter)."""
    import json
    from importlib.metadata import PackageNotFoundError, distribution

    try:  # the data file only: importing the package would pull pandas and unidecode for nothing
        path = distribution("nomquamgender").locate_file("nomquamgender/name_data.json")
    except PackageNotFoundError:  # an environment without the pinned package: the Faker lists only
        return frozenset()
    table = json.loads(path.read_text(encoding="utf-8"))
    return frozenset(name.title() for name, (sources, count, p_female, *_) in table.items()
                     if name.isalpha() and sources >= CONSENSUS_SOURCES and count >= CONSENSUS_COUNT
                     and min(p_female, 1 - p_female) <= CONSENSUS_UNCERTAINTY)


@lru_cache(maxsize=4)
def first_names(common: frozenset = frozenset()) -> frozenset:
    """Faker's first names, and the consensus names that are no English word in `common`."""
    return name_lists()[0] | {n for n in consensus_names() if n.lower() not in common}


@lru_cache(maxsize=4)
def all_names(common: frozenset = frozenset()) -> frozenset:
    return first_names(common) | name_lists()[1]


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
        # Irregular forms the index lists only as their base ("met", "shone", "drew").
        if lookups.has_table("lemma_exc"):
            exceptions = lookups.get_table("lemma_exc")
            for key in exceptions.keys():
                words.update(exceptions[key])
    return CommonWords(w.lower() for w in words)


def find_names(text: str, doc=None, common: frozenset = frozenset()) -> list[tuple[int, int, float]]:
    """(start, end, score) of each name found; `doc` is the text's spaCy Doc (its part-of-speech tags
    decide single words; without it single words are not reported). With `common` (common_words),
    names written all in lowercase or all in capitals count too ("emma", "justin bieber", "TAYLOR"),
    unless the word is a common English word."""
    first, last_names = first_names(common), name_lists()[1]
    words = [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]
    found = _titled_names(text, words, doc, first, last_names, common)
    if common:
        found += _folded_names(text, words, first, last_names, common)
    found += _greeted_names(text, words, first, all_names(common), common)
    found += [(m.start(1), m.end(1), PAIR_SCORE) for m in TITLED.finditer(text)]
    return found


def _greeted_names(text, words, first, names, common) -> list[tuple[int, int, float]]:
    """The word right after a greeting ("hey tanner", "Thank you, Grace", "thanks obama"), in any case:
    a first name of 3+ letters even when it is also an English word, or any 3+ letter word that is no
    English word and no stop word; a known name after it joins the span."""
    found = []
    for i, (word, _, _) in enumerate(words[:-1]):
        if word.lower() not in GREETINGS:
            continue
        k = i + 1 + (words[i + 1][0].lower() in ("you", "u") and i + 2 < len(words))
        name, start, end = words[k]
        known = name.title() in first and name.lower() not in STOP_WORDS
        if (len(name) < 3 or not (known or (common and name.isalpha() and name.lower() not in common))
                or not set(text[words[k - 1][2]:start]) <= {" ", ","}):
            continue
        if k + 1 < len(words) and words[k + 1][0].title() in names and set(text[end:words[k + 1][1]]) <= {" "}:
            end = words[k + 1][2]
        found.append((start, end, SINGLE_NAME_SCORE))
    return found


def _folded(word: str, common: frozenset, names) -> bool:
    """A lowercase or all-capitals word (not mixed) that is a known name and not a common word."""
    return (len(word) >= MIN_FOLDED and (word.islower() or word.isupper()) and word.lower() not in common
            and word.title() in names)


def _folded_names(text, words, first_names, last_names, common) -> list[tuple[int, int, float]]:
    """Runs of up to MAX_RUN lowercase/all-capitals name words: a known first name followed by known
    names is a PAIR ("emily rodriguez"), a first name alone a SINGLE ("emma"); a last name alone is
    not reported (too many are places and words in other languages)."""
    names = all_names(common)
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
    found, i, inside = [], 0, False
    while i < len(words):
        if not _titled(words[i][0]):
            i, inside = i + 1, False
            continue
        j = i
        while (j + 1 < len(words) and j - i + 1 < MAX_RUN and _titled(words[j + 1][0])
               and set(text[words[j][2]:words[j + 1][1]]) <= {" "}):
            j += 1
        # The longest run from word i that reads as a name: "Emily I" is no name, "Emily" is. A run is
        # cut only where a listed name that is no English word is left and the dropped words are English
        # ("Los Angeles", "Solar Energy", "Lord Ganesha" stay whole).
        for k in range(j, i - 1, -1):
            run = [w for w, _, _ in words[i:k + 1]]
            start, end = words[i][1], words[k][2]
            if k < j and not _cut_ok(run, [w for w, _, _ in words[k + 1:j + 1]], common):
                continue
            score = _score(run, first_names, last_names, doc, start, end, common, inside) or (
                _unknown_proper(run, doc, start, end, common, veto=k < j))
            if score:
                found.append((start, end, score))
                break
        # A run that is no name may hold one after its first word ("Thanks Emily"): scan again from there,
        # where the tagger's proper-noun tag is weaker evidence (it tags every word of "Los Angeles" so)
        # and the NER's place or organisation label vetoes it.
        i, inside = (k + 1, False) if score else (i + 1, j > i)
    return found


def _cut_ok(kept: list[str], dropped: list[str], common: frozenset) -> bool:
    return (bool(common) and any(w.lower() not in common for w in kept)
            and all(w.lower() in common for w in dropped))


def _score(run: list[str], first_names, last_names, doc, start: int, end: int, common: frozenset,
           inside: bool = False) -> float:
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
        if all(token.tag_ in PROPER_NOUN_TAGS for token in span) and not (
                inside and any(t.ent_type_ in NOT_PERSON_ENTITIES for t in span)):
            return SINGLE_NAME_SCORE
        # A first name that is also a word, capitalized after a lowercase word: no sentence start
        # explains the capital ("a lot Tanner and", "mean to Grace").
        before = doc[span.start - 1] if span.start else None
        # A noun only: an adjective there is a nationality or a title's word ("imperial French army").
        if (first in first_names and before is not None and before.text.isalpha() and before.text.islower()
                and span[0].tag_.startswith("NN")):
            return SINGLE_NAME_SCORE
    return 0.0


def _unknown_proper(run: list[str], doc, start: int, end: int, common: frozenset, veto: bool = False) -> float:
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
    # Cut from a longer run ("Los Angeles", "Microsoft Bot Framework"), the NER's place or organisation
    # label vetoes it: there it is right far more often than on a whole run.
    if veto and any(t.ent_type_ in NOT_PERSON_ENTITIES for t in span):
        return 0.0
    if span.end < len(doc) and doc[span.end].like_num:
        return 0.0
    return UNKNOWN_PROPER_SCORE


def recognizer(common: frozenset = frozenset()):
    """The Presidio recognizer (PERSON, English) over `find_names`; `common` as find_names takes it."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class NameListRecognizer(EntityRecognizer):
        def load(self) -> None:
            all_names(common)

        def analyze(self, text, entities, nlp_artifacts=None):
            doc = getattr(nlp_artifacts, "tokens", None)
            return [RecognizerResult("PERSON", start, end, score,
                                     recognition_metadata={"recognizer_name": self.name,
                                                           "recognizer_identifier": self.id})
                    for start, end, score in find_names(text, doc, common)]

    return NameListRecognizer(supported_entities=["PERSON"], name="NameListRecognizer", supported_language="en")
