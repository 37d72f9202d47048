"""The PII stage: typed placeholders, per-type counts, the max_pii drop, and a pre-screen that keeps Presidio away from
documents that cannot hold PII. Quality is checked on Presidio's own labelled sentences (presidio-research)."""

import importlib.util
import socket
import sys

import pytest

from conftest import BAD_INPUTS, REPO, documents_table
from stages.base import StageSetupError
from stages.pii import COUNT_COLUMNS, TOTAL_COLUMN, Pii, PiiConfig


@pytest.fixture(scope="module")
def stage():
    return Pii(PiiConfig())


def redacted(stage, text):
    return stage(documents_table([text])).column("text")[0].as_py()


def counts(out, row=0):
    return {name: out.column(column)[row].as_py() for name, column in COUNT_COLUMNS.items()}


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


def test_a_sixteen_digit_number_failing_luhn_is_kept(stage):
    text = "Your order 4111 1111 1111 1112 has shipped."
    assert redacted(stage, text) == text


def test_an_iban_with_a_wrong_check_sum_is_kept(stage):
    text = "Bitte überweisen Sie auf DE89 3704 0044 0532 0130 01."
    assert redacted(stage, text) == text


def test_a_possible_number_is_a_phone_only_next_to_a_phone_word(stage):
    assert redacted(stage, "Phone: 467 3395") == "Phone: <PHONE>"
    assert redacted(stage, "Lot 467 3395 was sold.") == "Lot 467 3395 was sold."


def test_dates_and_page_ranges_are_not_phone_numbers(stage):
    text = "Published 13.10.2021 at 10:30 in volume 12, pages 358-364 228-229 (ISBN 978-3-16-148410-0)."
    assert redacted(stage, text) == text


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


def test_a_document_without_candidates_is_unchanged_and_never_reaches_presidio():
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
    for name in ("email", "phone", "ip"):
        assert scores[name].support > 0
        assert scores[name].precision >= 0.9, (name, scores[name].false_alarms)
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
