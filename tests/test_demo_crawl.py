"""Tests for pipeline.demo_crawl: the deterministic offline demo crawl."""

from __future__ import annotations

import collections
import hashlib
import html
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest
import trafilatura
from warcio.archiveiterator import ArchiveIterator

from pipeline import demo_crawl
from pipeline.demo_crawl import write_demo_crawl

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LID_MODEL = REPO_ROOT.parent / "shared" / "data" / "models" / "lid176" / "lid.176.ftz"
PROSE_KINDS = {"article", "pii", "toxic", "near_duplicate", "exact_duplicate"}


# ----------------------------------------------------------------------------- fixtures


def _read_truth(directory: pathlib.Path) -> list[dict]:
    with open(directory / demo_crawl.TRUTH_NAME, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _records(paths: list[pathlib.Path]):
    """Yield (warc file name, record, payload bytes) for every record."""
    for path in paths:
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                yield path.name, record, record.content_stream().read()


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    """The default crawl (300 pages, 2 files, seed 0), written once for the module."""
    directory = tmp_path_factory.mktemp("crawl")
    started = time.perf_counter()
    paths = write_demo_crawl(directory, pages=300, files=2, seed=0)
    elapsed = time.perf_counter() - started
    truth = _read_truth(directory)
    payloads = {}
    for name, record, payload in _records(paths):
        if record.rec_type == "response":
            payloads[record.rec_headers.get_header("WARC-Record-ID")] = (record, payload)
    return {"dir": directory, "paths": paths, "truth": truth, "payloads": payloads, "elapsed": elapsed}


@pytest.fixture(scope="module")
def extracted(crawl):
    """trafilatura text of every HTML page, keyed by URL (the raw bytes go in, as a reader would pass them)."""
    texts = {}
    for row in crawl["truth"]:
        _, payload = crawl["payloads"][row["record_id"]]
        texts[row["url"]] = trafilatura.extract(payload) or ""
    return texts


# ----------------------------------------------------------------------------- determinism and files


def test_two_runs_are_byte_identical(tmp_path):
    first = write_demo_crawl(tmp_path / "a", pages=300, files=2, seed=0)
    second = write_demo_crawl(tmp_path / "b", pages=300, files=2, seed=0)
    assert [p.name for p in first] == ["demo-crawl-00000.warc.gz", "demo-crawl-00001.warc.gz"]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()
    for name in (demo_crawl.TRUTH_NAME, demo_crawl.MANIFEST_NAME):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_output_does_not_depend_on_hash_seed(tmp_path):
    """A fresh interpreter with another PYTHONHASHSEED must produce the same bytes (no set/hash ordering)."""
    here = write_demo_crawl(tmp_path / "here", pages=80, files=2, seed=3)
    code = ("import sys; from pipeline.demo_crawl import write_demo_crawl; "
            "write_demo_crawl(sys.argv[1], pages=80, files=2, seed=3)")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True, env=env, cwd=REPO_ROOT)
    for path in here:
        assert path.read_bytes() == (tmp_path / "there" / path.name).read_bytes()


def test_different_seeds_differ(tmp_path):
    a = write_demo_crawl(tmp_path / "a", pages=40, files=1, seed=0)
    b = write_demo_crawl(tmp_path / "b", pages=40, files=1, seed=1)
    assert a[0].read_bytes() != b[0].read_bytes()


def test_second_call_does_not_rewrite(tmp_path):
    paths = write_demo_crawl(tmp_path, pages=50, files=2, seed=0)
    every_file = sorted(tmp_path.iterdir())
    before = {p: p.stat().st_mtime_ns for p in every_file}
    time.sleep(0.02)
    again = write_demo_crawl(tmp_path, pages=50, files=2, seed=0)
    assert again == paths
    assert {p: p.stat().st_mtime_ns for p in sorted(tmp_path.iterdir())} == before
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]

    manifest = json.loads((tmp_path / demo_crawl.MANIFEST_NAME).read_text())
    assert manifest["params"]["pages"] == 50 and manifest["params"]["seed"] == 0
    assert [f["sha256"] for f in manifest["files"]] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_damaged_or_changed_crawl_is_rewritten(tmp_path):
    paths = write_demo_crawl(tmp_path, pages=30, files=3, seed=0)
    good = paths[1].read_bytes()
    paths[1].write_bytes(b"truncated")
    write_demo_crawl(tmp_path, pages=30, files=3, seed=0)
    assert paths[1].read_bytes() == good

    fewer = write_demo_crawl(tmp_path, pages=30, files=2, seed=0)
    assert sorted(p.name for p in tmp_path.glob("demo-crawl-*.warc.gz")) == [p.name for p in fewer]


def test_small_crawls_and_argument_checks(tmp_path):
    for pages, files in ((0, 1), (1, 1), (5, 3), (12, 4)):
        paths = write_demo_crawl(tmp_path / f"{pages}-{files}", pages=pages, files=files)
        html_pages = [r for _, r, _ in _records(paths)
                      if r.rec_type == "response" and r.http_headers.get_statuscode() == "200"
                      and r.http_headers.get_header("Content-Type", "").startswith("text/html")]
        assert len(paths) == files and len(html_pages) == pages
    with pytest.raises(ValueError):
        write_demo_crawl(tmp_path / "bad", pages=10, files=0)
    with pytest.raises(ValueError):
        write_demo_crawl(tmp_path / "bad", pages=-1, files=1)


def test_cli(tmp_path, capsys):
    assert demo_crawl.main([str(tmp_path / "out"), "--pages", "20", "--files", "1", "--seed", "2"]) == 0
    assert capsys.readouterr().out.strip().endswith("demo-crawl-00000.warc.gz")
    assert len(_read_truth(tmp_path / "out")) == 20


def test_generation_is_fast(crawl):
    assert crawl["elapsed"] < 5.0


# ----------------------------------------------------------------------------- WARC structure


def test_records_read_back_with_warcio(crawl):
    counts = collections.Counter()
    html_rows = []
    for name, record, payload in _records(crawl["paths"]):
        http = record.http_headers
        status = http.get_statuscode() if http and record.rec_type in ("response", "revisit") else None
        mime = (http.get_header("Content-Type") or "").split(";")[0] if http else ""
        counts[record.rec_type] += 1
        counts[(record.rec_type, status, mime)] += 1
        if record.rec_type == "response" and status == "200" and mime == "text/html":
            html_rows.append((record.rec_headers.get_header("WARC-Target-URI"), name,
                              record.rec_headers.get_header("WARC-Record-ID")))
            assert int(http.get_header("Content-Length")) == len(payload)
            assert http.get_header("Date") and http.get_header("Server")

    assert len(html_rows) == 300
    assert counts["warcinfo"] == 2
    assert counts["request"] == counts["metadata"] > 300
    assert counts["revisit"] >= 2
    for kind in ("image/png", "text/plain", "text/css", "application/javascript"):
        assert counts[("response", "200", kind)] >= 1, kind
    for status in ("301", "404", "500"):
        assert counts[("response", status, "text/html")] >= 1, status

    truth = crawl["truth"]
    assert [(r["url"], r["warc_file"], r["record_id"]) for r in truth] == html_rows
    assert len({r["record_id"] for r in truth}) == len({r["url"] for r in truth}) == 300


def test_warcinfo_request_metadata_and_revisit_headers(crawl):
    ids = collections.Counter()
    for path in crawl["paths"]:
        with open(path, "rb") as handle:
            records = list(ArchiveIterator(handle))
        first = records[0]
        assert first.rec_type == "warcinfo"
        assert first.rec_headers.get_header("WARC-Filename") == path.name
        for record in records:
            record_id = record.rec_headers.get_header("WARC-Record-ID")
            assert re.fullmatch(r"<urn:uuid:[0-9a-f-]{36}>", record_id)
            assert record.rec_headers.protocol == "WARC/1.0"
            assert record.rec_headers.get_header("WARC-Date").startswith("2024-03-")
            ids[record_id] += 1
        revisits = [r for r in records if r.rec_type == "revisit"]
        targets = {r.rec_headers.get_header("WARC-Target-URI") for r in records if r.rec_type == "response"}
        for revisit in revisits:
            assert revisit.rec_headers.get_header("WARC-Refers-To-Target-URI") in targets
            assert revisit.rec_headers.get_header("WARC-Payload-Digest").startswith("sha1:")
    assert max(ids.values()) == 1


def test_png_and_robots_payloads_are_real(crawl):
    kinds = set()
    for _, record, payload in _records(crawl["paths"]):
        if record.rec_type != "response":
            continue
        mime = record.http_headers.get_header("Content-Type") or ""
        if mime == "image/png":
            assert payload.startswith(b"\x89PNG\r\n\x1a\n") and payload.endswith(b"IEND\xaeB`\x82")
            kinds.add("png")
        elif mime.startswith("text/plain"):
            assert b"User-agent: *" in payload
            kinds.add("robots")
    assert kinds == {"png", "robots"}


def test_truth_offsets_point_at_the_records(crawl):
    rows = crawl["truth"][:5] + crawl["truth"][-5:]
    for row in rows:
        with open(crawl["dir"] / row["warc_file"], "rb") as handle:
            handle.seek(row["offset"])
            record = next(iter(ArchiveIterator(handle)))
            assert record.rec_headers.get_header("WARC-Record-ID") == row["record_id"]


# ----------------------------------------------------------------------------- page kinds and truth


def test_kind_and_language_mix(crawl):
    truth = crawl["truth"]
    kinds = collections.Counter(r["kind"] for r in truth)
    langs = collections.Counter(r["lang"] for r in truth)
    assert 25 <= kinds["near_duplicate"] <= 35
    assert kinds["exact_duplicate"] >= 3
    assert 25 <= kinds["pii"] <= 35
    low_quality = ("spam", "link_list", "lorem_ipsum", "js_heavy", "short", "repetitive", "toxic")
    assert 25 <= sum(kinds[k] for k in low_quality) <= 35
    assert all(kinds[k] >= 1 for k in low_quality)
    assert 0.50 <= langs["en"] / len(truth) <= 0.60
    assert all(langs[lang] >= 8 for lang in ("de", "fr", "es", "it", "nl", "pt"))
    assert langs["ru"] >= 2 and langs["zh"] >= 2

    declared = [r["html_lang"] for r in truth]
    assert declared.count(None) >= 3
    wrong = [r for r in truth if r["html_lang"] and r["kind"] in PROSE_KINDS
             and r["html_lang"].split("-")[0] != r["lang"]]
    assert 3 <= len(wrong) <= 0.1 * len(truth)


def test_duplicate_clusters(crawl):
    truth = crawl["truth"]
    by_url = {r["url"]: r for r in truth}
    position = {r["url"]: i for i, r in enumerate(truth)}
    clusters = collections.defaultdict(list)
    for row in truth:
        if row["duplicate_of"]:
            original = by_url[row["duplicate_of"]]
            assert original["kind"] == "article" and original["duplicate_of"] is None
            assert position[original["url"]] < position[row["url"]], "original is crawled first"
            assert row["lang"] == original["lang"] and row["url"] != original["url"]
            clusters[original["url"]].append(row)
    assert all(2 <= len(copies) + 1 <= 4 for copies in clusters.values())

    for row in truth:
        if row["kind"] == "exact_duplicate":
            _, copy_payload = crawl["payloads"][row["record_id"]]
            _, original_payload = crawl["payloads"][by_url[row["duplicate_of"]]["record_id"]]
            assert copy_payload == original_payload
        elif row["kind"] == "near_duplicate":
            assert set(row["edits"]) & {"typo", "sentence_added", "sentence_removed"}


def _shingles(text: str, lang: str) -> set[tuple[str, ...]]:
    tokens = list(text) if lang == "zh" else re.findall(r"\w+", text.lower())
    return {tuple(tokens[i:i + 5]) for i in range(max(1, len(tokens) - 4))}


def test_near_duplicates_are_near_and_unrelated_pages_are_not(crawl, extracted):
    """5-gram Jaccard on extracted text: copies stay close, different articles stay apart."""
    truth = crawl["truth"]
    shingles = {r["url"]: _shingles(extracted[r["url"]], r["lang"]) for r in truth if r["kind"] in PROSE_KINDS}

    def jaccard(a: str, b: str) -> float:
        return len(shingles[a] & shingles[b]) / len(shingles[a] | shingles[b])

    near = [jaccard(r["url"], r["duplicate_of"]) for r in truth if r["kind"] == "near_duplicate"]
    assert min(near) >= 0.7 and max(near) < 1.0
    roots = {r["url"]: r["duplicate_of"] or r["url"] for r in truth}
    articles = [r for r in truth if r["kind"] == "article" and r["lang"] != "en"][:60]
    unrelated = [jaccard(a["url"], b["url"]) for i, a in enumerate(articles) for b in articles[i + 1:]
                 if a["lang"] == b["lang"] and roots[a["url"]] != roots[b["url"]]]
    assert unrelated and max(unrelated) < 0.65


def _luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(digits)))
    return total % 10 == 0


def _iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def test_pii_values_are_on_the_page_and_valid(crawl, extracted):
    truth = crawl["truth"]
    seen = collections.Counter()
    for row in truth:
        assert sorted(row["pii_values"]) == row["pii"]
        if not row["pii"]:
            continue
        assert row["kind"] == "pii"
        text = extracted[row["url"]]
        for kind, values in row["pii_values"].items():
            seen[kind] += 1
            for value in values:
                assert value in text, (kind, value)
                if kind == "credit_card":
                    assert _luhn_ok(value) and len(re.sub(r"\D", "", value)) == 16
                elif kind == "iban":
                    assert _iban_ok(value)
                elif kind == "ssn":
                    assert re.fullmatch(r"\d{3}-\d{2}-\d{4}", value)
                elif kind == "ipv4":
                    assert all(0 <= int(part) <= 255 for part in value.split("."))
                elif kind == "email":
                    assert re.fullmatch(r"[\w.]+@[\w.-]+\.[a-z.]+", value)
    assert {"email", "phone", "ipv4", "credit_card", "iban", "ssn"} <= set(seen)
    phones = collections.defaultdict(list)
    for row in truth:
        for value in row["pii_values"].get("phone", []):
            phones["uk" if row["site"].endswith(".co.uk") else row["lang"]].append(value)
    assert any(re.fullmatch(r"(\(\d{3}\) |\d{3}-|\+1 \d{3} )555[- ]01\d\d", p) for p in phones["en"])
    assert all(re.match(r"(\+44 20 7946 0|020 7946 0|07700 900)\d{3}$", p) for p in phones["uk"]) and phones["uk"]
    assert all(re.match(r"(\+49 |0)", p) for p in phones["de"]) and phones["de"]
    assert any(re.match(r"\+(33|34|39|31|55|7|86) ", p) for lang in ("fr", "es", "it", "nl", "pt", "ru", "zh")
               for p in phones[lang])


# ----------------------------------------------------------------------------- extraction and language


def test_trafilatura_keeps_article_and_drops_boilerplate(crawl, extracted):
    truth = crawl["truth"]
    chosen = {}
    for row in truth:
        if row["kind"] == "article" and row["lang"] not in chosen:
            chosen[row["lang"]] = row
    assert len(chosen) >= 8
    for lang, row in chosen.items():
        text = extracted[row["url"]]
        ui = demo_crawl.UI[demo_crawl.SITES[[s.host for s in demo_crawl.SITES].index(row["site"])].lang]
        assert row["first_sentence"] in text, (lang, row["url"])
        for boilerplate in (ui["cookie_text"], ui["rights"], ui["related"], ui["privacy"], ui["newsletter"]):
            assert boilerplate not in text, (lang, boilerplate)


def test_every_prose_page_keeps_its_first_sentence(crawl, extracted):
    missing = [r["url"] for r in crawl["truth"]
               if r["kind"] in PROSE_KINDS and r["first_sentence"] not in extracted[r["url"]]]
    assert not missing


def test_low_quality_pages_look_low_quality(crawl, extracted):
    for row in crawl["truth"]:
        text = extracted[row["url"]]
        if row["kind"] == "toxic":
            assert re.search(r"\b(shit|crap|idiot|moron|bastard|damn)\b", text)
        elif row["kind"] == "js_heavy":
            assert text.count("{") >= 5
        elif row["kind"] == "lorem_ipsum":
            assert "Lorem ipsum dolor sit amet" in text
        elif row["kind"] == "repetitive":
            lines = [line for line in text.splitlines() if line.strip()]
            assert collections.Counter(lines).most_common(1)[0][1] >= 10
        elif row["kind"] == "short":
            assert len(text.split()) < 40 or len(text) < 120


STOPWORDS = {
    "en": set("the and of to is in that it for with was on are we you but this they have".split()),
    "de": set("der die und das ist nicht mit sich den ein eine auch zu im von sie es wir für dass".split()),
    "fr": set("le la les et des est une un pour dans que qui pas du au sur nous vous il plus".split()),
    "es": set("el la los las y que en un una es por para con del se muy lo pero más".split()),
    "it": set("il la le e di che è un una per con del della non sono gli alla nel più".split()),
    "nl": set("de het een en van is dat niet op met voor zijn ook je naar we er bij".split()),
    "pt": set("o a os as e de que um uma para com não do da em no na mais por".split()),
}


def _guess_language(text: str) -> str:
    """Tiny stop-word/script heuristic, independent of the generator, so the language test is never vacuous."""
    if len(re.findall(r"[\u4e00-\u9fff]", text)) > 20:
        return "zh"
    if len(re.findall(r"[\u0400-\u04ff]", text)) > 50:
        return "ru"
    words = re.findall(r"\w+", text.lower())
    scores = {lang: sum(w in stop for w in words) for lang, stop in STOPWORDS.items()}
    return max(scores, key=scores.get)


def test_language_mix_by_stopword_heuristic(crawl, extracted):
    rows = [r for r in crawl["truth"] if r["kind"] in PROSE_KINDS]
    hits = sum(_guess_language(extracted[r["url"]]) == r["lang"] for r in rows)
    assert hits >= 0.9 * len(rows)
    guessed = collections.Counter(_guess_language(extracted[r["url"]]) for r in rows)
    assert {"en", "de", "fr", "es", "it", "nl", "pt", "ru", "zh"} <= set(guessed)


def _fasttext_or_skip():
    if not LID_MODEL.is_file():
        pytest.skip(f"fastText model not found at {LID_MODEL}")
    if importlib.util.find_spec("fasttext") is None:
        pytest.skip("the fasttext package is not installed")
    import fasttext
    return fasttext.load_model(str(LID_MODEL))


def _fasttext_label(model, text: str) -> str:
    """Top label; falls back to the C++ binding where fasttext's predict() trips over NumPy 2 (copy=False)."""
    line = " ".join(text.split())
    try:
        labels, _ = model.predict(line)
        return labels[0] if labels else ""
    except ValueError:
        predictions = model.f.predict(line + "\n", 1, 0.0, "strict")
        return predictions[0][1] if predictions else ""


def test_language_fasttext_lid176(crawl, extracted):
    model = _fasttext_or_skip()
    rows = [r for r in crawl["truth"] if r["kind"] in PROSE_KINDS]
    hits = sum(_fasttext_label(model, extracted[r["url"]]) == f"__label__{r['lang']}" for r in rows)
    assert hits >= 0.9 * len(rows)


# ----------------------------------------------------------------------------- charsets


def _declared_charsets(record, payload: bytes) -> tuple[str | None, str | None]:
    header = record.http_headers.get_header("Content-Type") or ""
    header_charset = header.split("charset=")[1].strip().lower() if "charset=" in header else None
    match = re.search(rb'charset="?([A-Za-z0-9_-]+)', payload[:2048])
    return header_charset, match.group(1).decode("ascii").lower() if match else None


def test_non_utf8_pages_decode_with_their_declared_charset(crawl):
    rows = [r for r in crawl["truth"] if r["charset"] != "utf-8"]
    assert {r["charset"] for r in rows} >= {"windows-1252", "iso-8859-1"}
    assert {r["lang"] for r in rows} >= {"de", "fr", "es"}
    for row in rows:
        record, payload = crawl["payloads"][row["record_id"]]
        header_charset, meta_charset = _declared_charsets(record, payload)
        assert meta_charset == row["charset"]
        assert header_charset in (None, row["charset"])
        decoded = html.unescape(payload.decode(meta_charset))
        assert row["first_sentence"] in decoded and row["title"] in decoded
        with pytest.raises(UnicodeDecodeError):
            payload.decode("utf-8")


def test_utf8_pages_declare_utf8(crawl):
    for row in crawl["truth"]:
        if row["charset"] == "utf-8":
            record, payload = crawl["payloads"][row["record_id"]]
            header_charset, meta_charset = _declared_charsets(record, payload)
            assert meta_charset == "utf-8" and header_charset in (None, "utf-8")
            payload.decode("utf-8")


def test_six_english_articles_outside_duplicate_clusters_quote_a_problem_of_the_demo_eval_set(crawl, tmp_path):
    """The quickstart's decontaminate stage has something real to find: demo-eval.jsonl (written with the labels)
    holds the problems, and six articles quote one each, word for word, in their HTML."""
    written = demo_crawl.write_demo_labels(tmp_path)
    problems = [json.loads(line) for line in written["eval"].read_text().splitlines()]
    assert len(problems) == len(demo_crawl.EVAL_PROBLEMS) and all(p["question"] and p["answer"] for p in problems)
    quoting = [row for row in crawl["truth"] if row["eval_items"]]
    assert len(quoting) == demo_crawl.EVAL_QUOTED
    assert all(row["kind"] == "article" and row["lang"] == "en" for row in quoting)
    in_clusters = {row["duplicate_of"] for row in crawl["truth"] if row["duplicate_of"]}
    assert not in_clusters & {row["url"] for row in quoting}
    numbers = [number for row in quoting for number in row["eval_items"]]
    assert len(set(numbers)) == len(numbers)
    for row in quoting:
        _, payload = crawl["payloads"][row["record_id"]]
        text = html.unescape(payload.decode(row["charset"] or "utf-8", errors="replace"))
        assert problems[row["eval_items"][0] - 1]["question"] in text
