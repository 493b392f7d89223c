"""A STREET_ADDRESS recognizer: usaddress (a CRF address parser) labels each line that holds a digit,
and a run of address parts counts only with a word that makes it an address for certain.

usaddress parses, it does not detect: it labels "bought 3 apples today" as a house number and a
street. So a run of address labels is reported only when one of its words is a street type ("Street",
"Close", "Ave."), a unit ("Apt.", "Suite"), a post box ("P.O. Box", "PSC 4574, Box 8393") or a
street word of another language ("Parijsstraat", "Rua", "ul."), and it holds a digit. Address
blocks continue on the next lines (unit, town, country, postcode: "Apt. 946", "Poland 11248"): up to
BLOCK_LINES short lines after an address line are part of it.
"""

from __future__ import annotations

import re

SCORE = 0.6
BLOCK_LINES = 3  # lines after an address line taken as its town / country / postcode lines
BLOCK_LINE_CHARS = 48
PARTS = {"AddressNumber", "AddressNumberPrefix", "AddressNumberSuffix", "StreetNamePreDirectional",
         "StreetNamePreModifier", "StreetNamePreType", "StreetName", "StreetNamePostType",
         "StreetNamePostDirectional", "OccupancyType", "OccupancyIdentifier", "SubaddressType",
         "SubaddressIdentifier", "USPSBoxType", "USPSBoxID", "USPSBoxGroupType", "USPSBoxGroupID", "ZipCode"}
STREET_TYPES = frozenset(
    "street st avenue ave road rd lane ln boulevard blvd drive dr way court ct place pl square sq terrace "
    "close crescent cres parkway pkwy highway hwy circle cir trail trl row mall alley grove gardens park "
    "walk hill mews quay wharf heights view vale ridge plaza pike loop expressway freeway broadway kingsway "
    "causeway".split())
UNIT_TYPES = frozenset("apt apartment suite ste unit room rm floor fl flat # bldg building".split())
BOX_WORDS = frozenset("box postbox psc cmr p.o po".split())
# Street words of other languages, as a word ("Rua Diadema 1903") or as its ending ("Parijsstraat 8").
FOREIGN_WORDS = frozenset("rua via avenida av calle carrer rue ul ulica u piazza piazzetta largo viale corso "
                          "strada plaza paseo travessa praça praca allee gasse platz pagari".split())
FOREIGN_ENDINGS = ("straat", "strasse", "straße", "gate", "gata", "gatan", "vej", "vegur", "veien", "väg",
                   "vägen", "tie", "katu", "laan", "weg", "plein", "gasse", "utca", "ulice", "gade", "stræde",
                   "polku", "kuja", "road", "street")
ADDRESS_WORDS = STREET_TYPES | UNIT_TYPES | FOREIGN_WORDS | BOX_WORDS  # abbreviations that end no clause
WORD = re.compile(r"\S+")
PREFIX = re.compile(r"^[\s>*?|#-]*")  # quoting and list marks before a line ("> ", "??? ")
# "<postbox number> <street name> <house number>" filling a line, or after "at" / "address:" / "to":
# the European and Latin American order, whose street names have no type word ("53772 Holmatun 45",
# "lives at 92597 Jahu 80, Liiva").
NUMBER_NAME_NUMBER = re.compile(
    r"(?:^|(?<=\bat )|(?<=address: )|(?<=\bto ))\d{1,6} (?:[^\W\d_][\w.'’-]*\.? ){1,4}\d{1,5}[A-Za-z]?\b(?=[.,]?(?:$|,| and\b))")
LEADING_NUMBER = re.compile(r"\b\d{1,6}\s+$")
# A house number and a capitalized street word of another language, either order, which usaddress
# (trained on US addresses) labels as a building name: "77 Rue de la République", "Via Roma 12".
ARTICLES = r"(?:de|del|de la|da|do|dos|das|di|della|du|des|le|la|les|van|von|der)"
FOREIGN_STREET = (r"(?:Rue|Rua|Calle|Avenida|Carrer|Via|Viale|Piazza|Strada|Paseo|Travessa|Praça|Praca|Ulica|"
                  r"Allee|Largo|Corso|Avenue)")
NAME_WORD = rf"(?:{ARTICLES}\s+)?[A-ZÀ-Þ][\w'’-]*"
FOREIGN_ORDER = re.compile(rf"\b\d{{1,5}}[a-z]?,?\s+{FOREIGN_STREET}(?:\s+{NAME_WORD}){{1,4}}"
                           rf"|\b{FOREIGN_STREET}(?:\s+{NAME_WORD}){{1,4}},?\s+\d{{1,5}}[a-z]?\b")
# A house number, up to three capitalized words and a capitalized street type, wherever the parser
# lost the thread of a long sentence ("... card is 4111 ... and the office is at 641 Kingsway, Boston").
# Only the types that are no everyday word ("2 Park tickets", "3 View options" are no addresses).
NUMBER_STREET = re.compile(r"\b\d{1,5}[A-Za-z]?\s+(?:[A-Z][\w'’-]*\s+){0,3}(?:Street|St\.|Avenue|Ave\.|Road|Rd\.|"
                           r"Lane|Ln\.|Boulevard|Blvd\.?|Drive|Dr\.|Court|Ct\.|Terrace|Crescent|Parkway|Highway|"
                           r"Broadway|Kingsway|Causeway)(?!\w)")
# English words that a street name between the house number and its street type does not hold:
# "fixed 12 bugs on the main street" is no address, though usaddress labels it as one.
FUNCTION_WORDS = frozenset("on in the and or for with to at from by of is are was were a an my our your his her "
                           "their this that".split())


def _plain(word: str) -> str:
    return word.strip(".,;:()[]'\"").lower()


def _decisive(word: str, label: str) -> bool:
    plain = _plain(word)
    if label in ("StreetNamePostType", "StreetNamePreType", "StreetName") and plain in STREET_TYPES:
        return True
    if label in ("OccupancyType", "SubaddressType") and plain in UNIT_TYPES:
        return True
    if label in ("USPSBoxType", "USPSBoxGroupType") and plain in BOX_WORDS:
        return True
    return plain in FOREIGN_WORDS or (len(plain) > 5 and plain.endswith(FOREIGN_ENDINGS))


def find_addresses(text: str) -> list[tuple[int, int]]:
    """(start, end) of each address found in `text`."""
    import usaddress

    found, lines, offset = [], [], 0
    for line in text.split("\n"):
        lines.append((offset, line))
        offset += len(line) + 1
    block_left, blank = 0, False
    for start, line in lines:
        body_start = PREFIX.match(line).end()
        start, line = start + body_start, line[body_start:]
        spans = _line_addresses(usaddress, line, start) if any(c.isdigit() for c in line) else []
        spans += [(start + m.start(), start + m.end()) for pattern in (NUMBER_NAME_NUMBER, FOREIGN_ORDER, NUMBER_STREET)
                  for m in pattern.finditer(line)]
        if spans:
            found.extend(spans)
            block_left, blank = BLOCK_LINES, False
        elif block_left and _block_line(line):
            stripped = line.strip()
            first = start + line.index(stripped)
            found.append((first, first + len(stripped)))
            block_left -= 1
        elif block_left and not line.strip() and not blank:  # one blank line inside a block ("Town\n\nCountry")
            blank = True
        else:
            block_left = 0
    return found


def _block_line(line: str) -> bool:
    """A town / country / postcode line: short, and no sentence ("Thanks!", "Is that right?")."""
    stripped = line.strip()
    return 0 < len(stripped) <= BLOCK_LINE_CHARS and stripped[-1] not in "!?:" and not stripped[0].islower()


def _line_addresses(usaddress, line: str, offset: int) -> list[tuple[int, int]]:
    words = [(m.group(), m.start(), m.end()) for m in WORD.finditer(line)]
    if not words:
        return []
    try:
        labels = [label for _, label in usaddress.parse(line)]
    except Exception:  # the parser's own errors on odd input: no address here, never a failed scrub
        return []
    if len(labels) != len(words):  # usaddress splits on whitespace too; anything else is not ours to guess
        return []
    spans, run = [], []
    for (word, start, end), label in zip(words, labels, strict=True):
        if label in PARTS:
            run.append((word, start, end, label))
            if not _clause_end(word):
                continue
        # a clause ends the run too: "+1 415-555-0134. Card 4111 ..., office at 512 Maple Street" is three
        spans += _accepted(run, line, offset)
        run = []
    return spans + _accepted(run, line, offset)


def _clause_end(word: str) -> bool:
    """A word ending a clause ("0134.", "1111,"), not an abbreviation of an address word ("St.", "Apt.")."""
    plain = _plain(word)
    return word[-1] in ".,;" and plain not in ADDRESS_WORDS and len(plain) > 1


def _accepted(run, line: str, offset: int) -> list[tuple[int, int]]:
    first = next((n for n, (word, _, _, label) in enumerate(run) if _decisive(word, label)), len(run))
    cut = [n for n, (word, *_) in enumerate(run[:first]) if word.lower() in FUNCTION_WORDS]
    run = run[cut[-1] + 1:] if cut else run  # the address starts after the last function word
    if (run and any(any(c.isdigit() for c in word) for word, *_ in run)
            and any(_decisive(word, label) for word, _, _, label in run)):
        start = run[0][1]
        before = LEADING_NUMBER.search(line[:start])  # a postbox number the parser called something else
        end = run[-1][2] - (len(run[-1][0]) - len(run[-1][0].rstrip(".,;:")))  # "Americas," ends before its comma
        if _plain(run[-1][0]) in ADDRESS_WORDS:  # "St." keeps its abbreviation point
            end = run[-1][2] - (len(run[-1][0]) - len(run[-1][0].rstrip(",;:")))
        return [(offset + (before.start() if before else start), offset + end)]
    return []


def recognizer():
    """The Presidio recognizer (STREET_ADDRESS, English) over `find_addresses`."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class AddressRecognizer(EntityRecognizer):
        def load(self) -> None:
            pass

        def analyze(self, text, entities, nlp_artifacts=None):
            return [RecognizerResult("STREET_ADDRESS", start, end, SCORE,
                                     recognition_metadata={"recognizer_name": self.name,
                                                           "recognizer_identifier": self.id})
                    for start, end in find_addresses(text)]

    return AddressRecognizer(supported_entities=["STREET_ADDRESS"], name="AddressRecognizer", supported_language="en")
