"""The PII stage: typed placeholders, per-type counts, the max_pii drop, and a pre-screen that keeps Presidio away from
documents that cannot hold PII. Quality is checked on Presidio's own labelled sentences (presidio-research)."""

import importlib.util
import socket
import sys

import pyarrow as pa
import pytest

from conftest import BAD_INPUTS, REPO, documents_table
from stages.base import StageSetupError
from stages.pii import CANDIDATES, COUNT_COLUMNS, TOTAL_COLUMN, Pii, PiiConfig, candidate_stretches


@pytest.fixture(scope="module")
def stage():
    return Pii(PiiConfig())


def redacted(stage, text):
    return stage(documents_table([text])).column("text")[0].as_py()


def counts(out, row=0):
    return {name: out.column(column)[row].as_py() for name, column in COUNT_COLUMNS.items()}


def redacted_page(stage, text, lang=None, url="https://example.org/"):
    """The text of one document as the stage leaves it, with the langid stage's `lang` column and a URL."""
    docs = documents_table([text])
    docs = docs.set_column(docs.schema.get_field_index("url"), "url", pa.array([url], pa.string()))
    docs = docs.append_column("lang", pa.array([lang], pa.string()))
    return stage(docs).column("text")[0].as_py()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Questions? Write to jane.doe@example.org before Monday.", "Questions? Write to <EMAIL> before Monday."),
        ("Ruf uns an unter Tel. 030 1234567, wir helfen gern.", "Ruf uns an unter Tel. <PHONE>, wir helfen gern."),
        ("Box office: (212) 306-6794, open daily.", "Box office: <PHONE>, open daily."),
        ("Our mail server 93.184.216.34 rejected it.", "Our mail server <IP_ADDRESS> rejected it."),
        ("Reach the host at 2a00:1450:4001:81c::200e today.", "Reach the host at <IP_ADDRESS> today."),
        ("Charge it to my card 4111 1111 1111 1111 please.", "Charge it to my card <CREDIT_CARD> please."),
        ("Spenden an IBAN DE89 3704 0044 0532 0130 00, danke!", "Spenden an IBAN <IBAN>, danke!"),
        ("My social security number is 423-55-7812.", "My social security number is <US_SSN>."),
    ],
)
def test_each_type_is_replaced_by_its_placeholder(stage, text, expected):
    assert redacted(stage, text) == expected


def test_private_loopback_link_local_and_multicast_addresses_are_kept(stage):
    text = (
        "Set the router to 192.168.1.10 and the gateway to 10.0.0.1; the dashboard runs on 127.0.0.1, "
        "a lost device shows 169.254.12.7, IPv6 hosts use fe80::1 and ::1, and mDNS talks to 224.0.0.251."
    )
    out = stage(documents_table([text]))
    assert out.column("text")[0].as_py() == text and out.column("pii_ip")[0].as_py() == 0


@pytest.mark.parametrize(
    "card",
    [
        "4716 3025 1862 1048 134",  # Visa, 19 digits
        "4222222222222",  # Visa, 13 digits
        "2223 0031 2200 3222",  # Mastercard 2-series
        "5555 5555 5555 4444",  # Mastercard 51-55
        "3714 496353 98431",  # American Express, grouped 4 6 5
        "6011 0009 9013 9424",  # Discover
        "6759 6498 2648",  # Maestro, 12 digits
        "5018 2000 0000 0000 005",  # Maestro, 19 digits
        "3530111333300000",  # JCB
        "3056 930902 5904",  # Diners Club, 14 digits
        "6212 3456 7890 1232",  # UnionPay
        "2200 0000 0000 0004",  # Mir
    ],
)
def test_card_numbers_of_every_network_and_length_are_replaced(stage, card):
    assert redacted(stage, f"Please charge {card} for the order.") == "Please charge <CREDIT_CARD> for the order."


@pytest.mark.parametrize(
    "number",
    [
        "4111 1111 1111 1112",  # a Visa prefix and length, Luhn fails
        "4716 3025 1862 1048 135",  # 19 digits, Luhn fails
        "9111 1111 1111 1111 115",  # Luhn-valid, but no card network starts with 9
        "4111 1111 1111 116",  # Luhn-valid Visa digits, but 15 of them
    ],
)
def test_a_number_failing_luhn_or_outside_the_card_ranges_is_kept(stage, number):
    text = f"Your order {number} has shipped."
    assert redacted(stage, text) == text


def test_a_card_among_other_numbers_is_found_and_page_ranges_in_a_table_are_not_cards(stage):
    assert redacted(stage, "Ticket 2024 4111 1111 1111 1111 12/27") == "Ticket 2024 <CREDIT_CARD> 12/27"
    # "620 411-413 55-56 223" (a real page) holds the Luhn-valid UnionPay digits 6204114135556223, not as cards group
    table_row = "Bauarten 618-620 411-413 55-56 223 FTO Sicherheitsbatterieklemme 635-641 417-418 X 61-64"
    assert counts(Pii(PiiConfig(entities=["credit_card"]))(documents_table([table_row])))["credit_card"] == 0


@pytest.mark.parametrize("number", ["6759 6498 2648", "4716302518621048134", "4716 3025 1862 1048 134"])
def test_the_candidate_screen_lets_twelve_and_nineteen_digit_numbers_through(number):
    text = f"card {number} ok"
    start = text.index(number)
    stretches = candidate_stretches(text, CANDIDATES)
    assert any(begin <= start and start + len(number) <= end for begin, end, _ in stretches)


def test_an_iban_with_a_wrong_check_sum_is_kept(stage):
    text = "Bitte überweisen Sie auf DE89 3704 0044 0532 0130 01."
    assert redacted(stage, text) == text


def test_a_possible_number_is_a_phone_only_next_to_a_phone_word(stage):
    assert redacted(stage, "Phone: 467 3395") == "Phone: <PHONE>"
    assert redacted(stage, "Lot 467 3395 was sold.") == "Lot 467 3395 was sold."


def test_dates_and_page_ranges_are_not_phone_numbers(stage):
    text = "Published 13.10.2021 at 10:30 in volume 12, pages 358-364 228-229 (ISBN 978-3-16-148410-0)."
    assert redacted(stage, text) == text


@pytest.mark.parametrize(
    "text",
    [
        "Send it to 1 Main St, Mill Valley, CA 94941 2505 by Friday.",  # zip code and street number (valid in ES)
        "Sprache: Deutsch ISBN-10: 3942795116 ISBN-13: 978-3942795111",  # valid German numbers, labelled ISBN
        "Call us about order no. 0228 999582 if it is late.",  # a German number's shape, a phone word, an order
        "Ihre Bestellnummer: 030 1234567, Lieferung morgen.",
        "Öffnungszeiten Tel. 9.00-16.00 Uhr",  # opening hours next to a phone word
        "Tel.: 05.12.1972 00",  # a date with digits after it
    ],
)
def test_zip_codes_isbns_order_numbers_and_opening_hours_are_not_phone_numbers(stage, text):
    assert redacted(stage, text) == text


@pytest.mark.parametrize(
    "number",
    [
        "078 8098 1119",  # a UK mobile, grouped as people write it, not as libphonenumber formats it
        "07700 900 461",  # a UK mobile as libphonenumber groups it
        "0161 496 0066",  # a UK landline, area code first
    ],
)
def test_national_numbers_of_the_default_regions_need_no_phone_word(stage, number):
    assert redacted(stage, f"They're not answering at {number} today.") == "They're not answering at <PHONE> today."


@pytest.mark.parametrize(
    "number, lang, url",
    [
        ("0489 25 37 29", "nl", "https://example.org/"),  # Belgian mobile: nl -> NL, BE
        ("0489 25 37 29", None, "https://www.example.be/contact"),  # the same from the TLD alone
        ("024 971 50 30", "nl", "https://example.org/"),  # Dutch landline
        ("0688 872 49 99", "de", "https://example.org/"),  # Austrian mobile: de -> DE, AT, CH
        ("0680 298 70 63", None, "https://www.example.at/"),  # another one, from the TLD
        ("71-33-52-22", None, "https://shop.example.dk/"),  # Danish: no national prefix, grouped as DK groups
        ("22 317 05 43", "pl", "https://example.org/"),  # Polish landline
    ],
)
def test_numbers_of_the_regions_inferred_from_language_or_tld_need_no_phone_word(stage, number, lang, url):
    text = f"They're not answering at {number} today."
    assert redacted_page(stage, text, lang=lang, url=url) == "They're not answering at <PHONE> today."
    assert redacted_page(stage, text) == text  # without the hint: only possible in the default regions


def test_generic_country_tlds_and_english_imply_no_foreign_region(stage):
    text = "They're not answering at 71-33-52-22 today."
    assert redacted_page(stage, text, lang="en", url="https://startup.io/") == text
    assert redacted_page(stage, text, url="https://www.example.co.uk/") == text


def test_next_to_a_phone_word_a_number_of_a_region_outside_the_list_passes():
    us_only = Pii(PiiConfig(phone_regions=["US"]))  # eight digits are no possible US number: DK's, from the fallback
    assert redacted(us_only, "Ring mig på tlf. 71 33 52 22.") == "Ring mig på tlf. <PHONE>."
    assert redacted(us_only, "Lot 71 33 52 22 was sold.") == "Lot 71 33 52 22 was sold."


def test_counts_per_type_and_total(stage):
    text = (
        "Contact anna@example.com or ben@example.net, phone +44 20 7946 0958. "
        "The site moved to 93.184.216.34. Card on file: 4111 1111 1111 1111."
    )
    out = stage(documents_table([text]))
    assert counts(out) == {"email": 2, "phone": 1, "ip": 1, "credit_card": 1, "iban": 0, "us_ssn": 0}
    assert out.column(TOTAL_COLUMN)[0].as_py() == 5


def test_max_pii_drops_documents_over_the_limit_only():
    stage = Pii(PiiConfig(max_pii=2))
    two = "Write to anna@example.com or ben@example.net."
    three = "Write to anna@example.com, ben@example.net or cleo@example.org."
    out = stage(documents_table([two, three]))
    assert out.column("drop_reason").to_pylist() == [None, "too_much_pii"]
    assert out.column(TOTAL_COLUMN).to_pylist() == [2, 3]


def test_max_pii_none_never_drops():
    stage = Pii(PiiConfig(max_pii=None))
    text = " ".join(f"user{index}@example.com" for index in range(50))
    out = stage(documents_table([text]))
    assert out.column("drop_reason").to_pylist() == [None] and out.column(TOTAL_COLUMN)[0].as_py() == 50


def test_replace_false_only_counts():
    text = "Write to jane.doe@example.org or call +44 20 7946 0958."
    out = Pii(PiiConfig(replace=False))(documents_table([text]))
    assert out.column("text")[0].as_py() == text
    assert out.column("pii_email")[0].as_py() == 1 and out.column("pii_phone")[0].as_py() == 1


def test_custom_placeholders_keep_the_other_defaults():
    stage = Pii(PiiConfig(placeholders={"email": "[email removed]"}))
    assert redacted(stage, "Mail jane@example.org, call +44 20 7946 0958.") == "Mail [email removed], call <PHONE>."


@pytest.mark.parametrize(
    "text, expected",
    [
        # the card number also reads as a phone number next to "call": one placeholder, the validated type's
        ("Call 4111 1111 1111 1111 now", "Call <CREDIT_CARD> now"),
        ("Tel. oder Überweisung: DE89 3704 0044 0532 0130 00", "Tel. oder Überweisung: <IBAN>"),
    ],
)
def test_overlapping_detections_give_one_placeholder(stage, text, expected):
    out = stage(documents_table([text]))
    assert out.column("text")[0].as_py() == expected and out.column(TOTAL_COLUMN)[0].as_py() == 1


def test_a_document_without_candidates_is_unchanged_and_never_analysed():
    stage = Pii(PiiConfig())
    text = (
        "The council met on Monday to discuss the new tram line. About 55 million euros will be spent, "
        "and 3 stops are planned. Tickets cost 2.50 EUR; the line opens in 2026."
    )
    out = stage(documents_table([text, text]))
    assert out.column("text").to_pylist() == [text, text]
    assert out.column(TOTAL_COLUMN).to_pylist() == [0, 0]
    assert stage.analyzer_calls == 0
    stage(documents_table(["Write to jane.doe@example.org."]))
    assert stage.analyzer_calls == 1


def test_a_document_with_too_many_candidate_characters_is_dropped_unanalysed():
    stage = Pii(PiiConfig(max_candidate_chars=1_000))
    table_of_numbers = "\n".join(f"{row} 1{row:03d} 2{row:03d} 3{row:03d}" for row in range(200))
    out = stage(documents_table([table_of_numbers, "Write to jane.doe@example.org."]))
    assert out.column("drop_reason").to_pylist() == ["too_many_pii_candidates", None]
    assert out.column(TOTAL_COLUMN).to_pylist() == [None, 1] and stage.analyzer_calls == 1


BAD_AND_LARGE = BAD_INPUTS | {
    "giant_single_line_with_pii": (
        "word " * 500_000 + "mail jane.doe@example.org, tel. +44 20 7946 0958 " + "word " * 500_000
    ),
}


@pytest.mark.parametrize("kind", sorted(BAD_AND_LARGE))
def test_bad_input_gets_a_decision(stage, kind):
    out = stage(documents_table([BAD_AND_LARGE[kind]]))
    assert out.column("error").to_pylist() == [None]
    assert out.column("drop_reason").to_pylist() == [None]
    assert out.column(TOTAL_COLUMN)[0].as_py() == (2 if kind == "giant_single_line_with_pii" else 0)


def test_rows_keep_their_order_and_every_column_is_typed(stage):
    texts = ["no pii here", "", "mail jane.doe@example.org", None, "card 4111 1111 1111 1111"]
    out = stage(documents_table(texts))
    assert out.column("id").to_pylist() == [f"doc{index}" for index in range(len(texts))]
    assert out.column("text").to_pylist() == ["no pii here", "", "mail <EMAIL>", None, "card <CREDIT_CARD>"]
    for field in Pii.output_fields:
        assert out.schema.field(field.name).type == field.type
    assert out.column(TOTAL_COLUMN).to_pylist() == [0, 0, 1, 0, 1]


def test_building_and_running_the_stage_never_touches_the_network(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    stage = Pii(PiiConfig())  # e-mail validation reads the public-suffix list: the bundled copy, not publicsuffix.org
    text = "Write to jane.doe@example.org or call +44 20 7946 0958."
    assert redacted(stage, text) == "Write to <EMAIL> or call <PHONE>."
    assert attempts == []


def test_an_unknown_phone_region_is_a_config_error():
    with pytest.raises(ValueError, match="unknown regions"):
        PiiConfig(phone_regions=["US", "XX"])


def test_a_missing_ner_model_stops_the_run_before_it_starts(tmp_path):
    with pytest.raises(StageSetupError, match="ner_model"):
        Pii.prepare(PiiConfig(ner_model="xx_no_such_model_sm"), tmp_path)


def test_an_installed_spacy_pipeline_can_serve_as_the_nlp_engine(tmp_path):
    import spacy

    spacy.blank("en").to_disk(tmp_path / "blank_en")
    config = Pii.prepare(PiiConfig(ner_model=str(tmp_path / "blank_en")), tmp_path)
    assert redacted(Pii(config), "Write to jane.doe@example.org.") == "Write to <EMAIL>."


def load_eval_script():
    """scripts/ is not a package: load scripts/eval_pii.py by path (its dataclasses need it in sys.modules)."""
    spec = importlib.util.spec_from_file_location("eval_pii", REPO / "scripts" / "eval_pii.py")
    module = sys.modules.setdefault("eval_pii", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def test_precision_and_recall_on_presidio_research_sentences(data_dir):
    eval_pii = load_eval_script()
    scores = eval_pii.evaluate(data_dir / "pii" / "presidio_research" / "synth_dataset_v2.dev.json")["overlap"]
    for name in ("email", "phone", "ip", "credit_card"):
        assert scores[name].support > 0
        assert scores[name].precision >= 0.95, (name, scores[name].false_alarms)
        assert scores[name].recall >= 0.9, (name, scores[name].misses)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="only matters where torch is installed")
def test_a_worker_building_the_pii_stage_does_not_import_torch_and_can_still_import_it_later():
    """Presidio and spaCy's thinc import torch whenever it is installed; the pattern recognizers never use it,
    and it cost every worker 1-3 s of start-up and about 300 MB."""
    import os
    import subprocess

    code = ("import sys; from stages.pii import Pii, PiiConfig\n"
            "stage = Pii(PiiConfig())\n"
            "print('torch' in sys.modules, stage.find('mail me at jane.doe@example.com') != [])\n"
            "import torch; print(torch.ones(2).sum().item())")
    environment = {name: value for name, value in os.environ.items() if name != "PRESIDIO_DEVICE"}
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                               env=environment, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["False", "True", "2.0"]
