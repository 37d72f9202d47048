"""The URL filter: domain and URL blocklists (subdomains by registered domain, offline), banned words and subwords,
soft-banned words counted against a limit, list files plain or gzip, rows without a URL, and a whole run that stages
its lists for the workers."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from conftest import REPO, pipeline_cli
from pipeline.io.lineage import host_and_domain
from pipeline.schema import RECORD_SCHEMA, empty_row
from stages import STAGES
from stages.base import StageSetupError
from stages.url_filter import UrlFilter, UrlFilterConfig, UrlLists, hostname, url_key


def urls_table(urls: list[str | None]) -> pa.Table:
    """A batch of documents as the first stage receives them, with the given URLs."""
    rows = []
    for index, url in enumerate(urls):
        row = empty_row()
        row.update(id=f"doc{index}", url=url, offset=index, text="some text")
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=RECORD_SCHEMA)


def write_list(path: Path, entries: list[str]) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as out:
        out.write("# a comment line\n\n" + "\n".join(entries) + "\n")
    return str(path)


def verdicts(lists: UrlLists, urls: list[str]) -> dict[str, str | None]:
    return {url: lists.judge(url)[0] for url in urls}


def test_a_listed_domain_blocks_itself_and_every_subdomain_and_nothing_that_only_looks_like_it():
    lists = UrlLists(domains=["example.com"])
    expected = {
        "https://example.com/": "blocked_domain",
        "http://www.example.com/a/b": "blocked_domain",
        "https://a.b.example.com:8443/x?y": "blocked_domain",
        "http://EXAMPLE.COM./": "blocked_domain",
        "https://notblocked-example.com/": None,
        "https://example.com.evil.org/example.com": None,
        "https://myexample.com/": None,
    }
    assert verdicts(lists, list(expected)) == expected
    assert lists.judge("http://a.b.example.com/")[1] == "example.com"  # the entry that matched is the signal


def test_registered_domains_on_multi_part_suffixes_and_listed_subdomains():
    """A listed host blocks its own subdomains, never its parents, and an entry above a registered domain (a public
    suffix such as co.uk) blocks nothing."""
    lists = UrlLists(domains=["shop.example.co.uk", "co.uk", "blog.example.org"])
    expected = {
        "https://shop.example.co.uk/cart": "blocked_domain",
        "https://www.shop.example.co.uk/": "blocked_domain",
        "https://example.co.uk/": None,
        "https://bbc.co.uk/news": None,
        "https://blog.example.org/post": "blocked_domain",
        "https://example.org/": None,
        "https://other.example.org/": None,
    }
    assert verdicts(lists, list(expected)) == expected
    assert host_and_domain("https://www.shop.example.co.uk/")[1] == "example.co.uk"


def test_an_ip_address_is_matched_whole_and_a_host_on_no_known_suffix_by_its_last_two_labels():
    lists = UrlLists(domains=["192.0.2.7", "two.example", "intranet"])
    expected = {
        "http://192.0.2.7/admin": "blocked_domain",
        "http://192.0.2.7:8080/": "blocked_domain",
        "http://192.0.2.70/": None,
        "https://two.example/": "blocked_domain",
        "https://one.two.example/": "blocked_domain",
        "http://intranet/wiki": "blocked_domain",
        "http://wiki.intranet/": None,
    }
    assert verdicts(lists, list(expected)) == expected


def test_a_listed_url_blocks_itself_and_what_lies_under_it_whatever_its_scheme_or_www():
    lists = UrlLists(urls=["badsite.org/adult", "http://www.other.net/page.php?id=3", "https://whole-host.net/"])
    assert url_key("https://user@www.Example.com:443/a/b?q#top") == "example.com/a/b?q"
    expected = {
        "http://badsite.org/adult": "blocked_url",
        "https://www.badsite.org/adult/gallery/1.html": "blocked_url",
        "http://badsite.org/adult?page=2": "blocked_url",
        "http://badsite.org/adulthood": None,
        "http://badsite.org/": None,
        "https://other.net/page.php?id=3#photos": "blocked_url",
        "https://other.net/page.php?id=4": None,
        "http://whole-host.net/anything": "blocked_url",
    }
    assert verdicts(lists, list(expected)) == expected


def test_a_banned_word_must_be_a_whole_token_and_a_banned_subword_matches_anywhere(data_dir):
    """With datatrove's own lists (the ones FineWeb used): `porn` is a banned word, `pornhub` a banned subword and
    `pornography` only a soft-banned word."""
    words = data_dir / "toxicity" / "nsfw_wordlists"
    stage = UrlFilter(UrlFilterConfig(banned_word_lists=[str(words / "banned_words.txt")],
                                      banned_subword_lists=[str(words / "banned_subwords.txt")],
                                      soft_banned_word_lists=[str(words / "soft_banned_words.txt")]))
    out = stage(urls_table(["https://videos.example/free-PORN-clips", "https://www.pornhubfans.net/",
                            "https://law.example/pornography-and-the-first-amendment",
                            "https://news.example/2024/05/city-council-budget"]))
    assert out.column("drop_reason").to_pylist() == ["banned_word", "banned_subword", None, None]
    assert out.column("url_match").to_pylist() == ["porn", "pornhub", None, None]
    assert out.column("url_soft_banned_words").to_pylist() == [0, 0, 1, 0]


def test_soft_banned_words_drop_only_above_the_limit(tmp_path):
    soft = write_list(tmp_path / "soft.txt", ["hot", "babes", "sexy"])
    urls = ["https://a.example/hot-deals", "https://a.example/hot-babes", "https://a.example/hot-sexy-babes/babes"]
    for limit, expected in ((1, [None, "soft_banned_words", "soft_banned_words"]),
                            (2, [None, None, "soft_banned_words"]), (3, [None, None, None])):
        out = UrlFilter(UrlFilterConfig(soft_banned_word_lists=[soft], max_soft_banned_words=limit))(urls_table(urls))
        assert out.column("drop_reason").to_pylist() == expected, limit
        assert out.column("url_soft_banned_words").to_pylist() == [1, 2, 3]  # distinct words
    assert out.column("url_match").to_pylist() == [None, None, None]


def test_the_first_rule_that_matches_decides():
    lists = UrlLists(domains=["blocked.example"], urls=["listed.example/x"], banned_words=["casino"],
                     banned_subwords=["casino"], soft_banned_words=["free", "bonus"])
    assert lists.judge("https://blocked.example/casino-free-bonus") == ("blocked_domain", "blocked.example", 2)
    assert lists.judge("https://listed.example/x/casino") == ("blocked_url", "listed.example/x", 0)
    assert lists.judge("https://a.example/casino-free-bonus") == ("banned_word", "casino", 2)
    assert lists.judge("https://a.example/free-bonus-onlinecasino") == ("soft_banned_words", "bonus free", 2)
    assert lists.judge("https://a.example/onlinecasino") == ("banned_subword", "casino", 0)


def test_lists_are_read_plain_or_gzip_and_several_files_add_up(tmp_path):
    config = UrlFilterConfig(domain_lists=[write_list(tmp_path / "a.txt", ["one.example"]),
                                           write_list(tmp_path / "b.txt.gz", ["TWO.example."])])
    assert UrlFilter.prepare(config, tmp_path) == config
    out = UrlFilter(config)(urls_table(["https://one.example/", "https://www.two.example/", "https://three.example/"]))
    assert out.column("drop_reason").to_pylist() == ["blocked_domain", "blocked_domain", None]
    assert UrlFilterConfig.model_validate({"domain_lists": "a.txt"}).domain_lists == ["a.txt"]  # one file, no list


def test_a_row_without_a_url_is_kept_with_null_signals(tmp_path):
    stage = UrlFilter(UrlFilterConfig(domain_lists=[write_list(tmp_path / "d.txt", ["example.com"])],
                                      soft_banned_word_lists=[write_list(tmp_path / "s.txt", ["free"])]))
    out = stage(urls_table([None, "", "not a url at all", "https://example.com/"]))
    assert out.num_rows == 4
    assert out.column("drop_reason").to_pylist() == [None, None, None, "blocked_domain"]
    assert out.column("url_soft_banned_words").to_pylist() == [None, None, 0, 0]
    assert out.column("error").to_pylist() == [None] * 4


def test_missing_empty_or_damaged_lists_stop_the_run_before_it_starts(tmp_path):
    with pytest.raises(StageSetupError, match="no list given"):
        UrlFilter.prepare(UrlFilterConfig(), tmp_path)
    with pytest.raises(StageSetupError, match="url_lists: .* does not exist"):
        UrlFilter.prepare(UrlFilterConfig(url_lists=[str(tmp_path / "none.txt")]), tmp_path)
    (tmp_path / "empty.txt").write_text("# nothing but a comment\n\n")
    with pytest.raises(StageSetupError, match="domain_lists: .* holds no entries"):
        UrlFilter.prepare(UrlFilterConfig(domain_lists=[str(tmp_path / "empty.txt")]), tmp_path)
    (tmp_path / "plain.gz").write_text("example.com\n")
    with pytest.raises(StageSetupError, match="cannot be read"):
        UrlFilter.prepare(UrlFilterConfig(domain_lists=[str(tmp_path / "plain.gz")]), tmp_path)


def test_the_public_suffix_list_is_the_bundled_snapshot_no_network_no_cache_writes(tmp_path):
    """In a fresh interpreter whose sockets record every attempt and whose cache folders are empty: registered
    domains come out right for multi-part suffixes, no socket was opened and no file was written."""
    homes = {name: tmp_path / name for name in ("HOME", "XDG_CACHE_HOME", "TLDEXTRACT_CACHE", "CCPIPELINE_CACHE")}
    script = textwrap.dedent("""
        import json, socket
        attempts = []
        def refuse(*args, **kwargs):
            attempts.append(repr(args[:2]))
            raise OSError("no network in this test")
        socket.getaddrinfo = refuse
        socket.create_connection = refuse
        socket.socket.connect = refuse
        from stages.url_filter import UrlLists
        lists = UrlLists(domains=["example.co.uk"])
        print(json.dumps({"verdict": lists.judge("https://a.b.example.co.uk/x")[0], "attempts": attempts}))
    """)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **{name: str(path) for name, path in homes.items()}}
    completed = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {"verdict": "blocked_domain", "attempts": []}
    assert not any(path.exists() for path in homes.values())


def test_the_url_filter_comes_first_and_names_the_signal_behind_each_drop_reason():
    assert list(STAGES)[:2] == ["url_filter", "html_langid"]
    assert UrlFilter.signal_of("blocked_domain") == "url_match"
    assert UrlFilter.signal_of("soft_banned_words") == "url_soft_banned_words"


def test_the_demo_crawls_blocklist_blocks_its_casino_and_pharma_spam_pages_and_no_other(tmp_path):
    """The quickstart's url_filter: the blocklist the demo crawl writes against the pages of the quickstart's crawl
    (its truth file says which site made each page)."""
    from pipeline.demo_crawl import write_demo_crawl, write_demo_labels

    blocklist = write_demo_labels(tmp_path, seed=0)["blocked_domains"]
    write_demo_crawl(tmp_path, pages=300, files=2, seed=0)
    truth = [json.loads(line) for line in (tmp_path / "demo-crawl-truth.jsonl").read_text().splitlines()]
    stage = UrlFilter(UrlFilter.prepare(UrlFilterConfig(domain_lists=[str(blocklist)]), tmp_path))
    out = stage(urls_table([page["url"] for page in truth]))
    blocked = {page["url"] for page, reason in zip(truth, out.column("drop_reason").to_pylist()) if reason}
    spam = {page["url"] for page in truth if hostname(page["url"]) in ("casino-bonus-kingdom.top",
                                                                       "pharma-discount-shop.xyz")}
    assert len(spam) >= 3 and blocked == spam


def test_a_run_stages_its_lists_for_the_workers_and_counts_every_page(tmp_path, warc_dir):
    """A whole run of url_filter on one file of real pages, in this process (ray.in_process_max_mb): a gzip domain
    list with wordpress.com (its blogs are subdomains) and a URL list with one Wayback Machine capture. The drops are
    those the real index predicts; both lists were staged in the run directory, from where the workers read them."""
    source = warc_dir / "derived_real_html" / "derived-real-html-00000.warc.gz"
    index = [json.loads(line) for line in (warc_dir / "derived_real_html" / "index.jsonl").read_text().splitlines()]
    pages = [row["url"] for row in index if row["warc_file"] == source.name]
    blogs = [url for url in pages if (host_and_domain(url)[0] or "").endswith(".wordpress.com")]
    capture = "https://web.archive.org/web/20160401095740/http://www.welpenkaufen24.de/"
    assert len(blogs) >= 5 and capture in pages
    domains = write_list(tmp_path / "domains.gz", ["wordpress.com"])
    urls = write_list(tmp_path / "urls.txt", ["web.archive.org/web/20160401095740"])
    config = tmp_path / "run.yaml"
    config.write_text(f"name: urls\noutput: {tmp_path / 'run'}\ninput: {{paths: [{source}]}}\nrejects: true\n"
                      f"stages: [{{url_filter: {{domain_lists: {domains}, url_lists: [{urls}]}}}}]\n"
                      "ray: {in_process_max_mb: 20}\n")
    result = pipeline_cli("run", "--config", str(config), "--quiet")
    assert result.returncode == 0, result.stderr

    run = tmp_path / "run"
    stage = next(s for s in json.loads((run / "stats" / "summary.json").read_text())["stages"]
                 if s["stage"] == "url_filter")
    assert stage["rows_in"] == len(pages)
    assert stage["dropped"] == {"blocked_domain": len(blogs), "blocked_url": 1}
    assert stage["kept"] == len(pages) - len(blogs) - 1
    rejects = pads.dataset(run / "rejects").to_table(columns=["url", "url_match"]).to_pylist()
    assert sorted(row["url"] for row in rejects if row["url_match"]) == sorted(blogs + [capture])
    staged = sorted(path.name.split("-", 1)[1] for path in (run / "_assets").iterdir())
    assert staged == ["domains.gz", "urls.txt"]  # each list of the setting, under its checksum, for the workers
