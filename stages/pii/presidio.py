"""Presidio's analyzer for the types it recognizes here (e-mails, IPs, IBANs, US SSNs), built to work offline.

Its pattern recognizers run on the NoOp NLP engine (no spaCy model is needed; an installed spaCy pipeline can be
configured instead, never downloaded), e-mail domains are checked against tldextract's bundled public-suffix list,
and only public IPs count. Presidio is imported when the analyzer is built, without torch unless a spaCy pipeline is
configured.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from stages.base import StageSetupError


def is_public_ip(address: str) -> bool:
    """A globally routable unicast address (a CIDR suffix is allowed); IPv4-mapped IPv6 is judged as its IPv4."""
    try:
        ip = ipaddress.ip_interface(address).ip
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def ner_model_problem(ner_model: str) -> str | None:
    """Why a configured spaCy pipeline cannot be used (it is never downloaded), or None."""
    import spacy

    if spacy.util.is_package(ner_model) or Path(ner_model).is_dir():
        return None
    return f"{ner_model} is neither an installed spaCy package nor a directory; install it or leave ner_model unset"


def build_analyzer(entities: list[str], ner_model: str | None):
    """Presidio's AnalyzerEngine with the recognizers of `entities` (our type names) that it finds (e-mails, IPs,
    IBANs, SSNs), working offline, on the spaCy pipeline `ner_model` or, if None, on no NLP model."""
    # Presidio needs no torch here (pattern recognizers on the NoOp engine), but with torch installed (the train
    # extra) its import pulled torch into every worker twice over: presidio's device detection for its
    # transformer engines, and spaCy's thinc, which imports torch whenever it can: seconds of start-up and
    # hundreds of MB per worker (and CUDA initialised on a GPU node). A device the user set is kept, and a
    # configured spaCy pipeline (ner_model) gets torch as usual.
    os.environ.setdefault("PRESIDIO_DEVICE", "cpu")
    with _torch_hidden(ner_model is None):
        return _build_analyzer(entities, ner_model)


@contextmanager
def _torch_hidden(hide: bool):
    """While inside, `import torch` fails as if torch were not installed (unless it is imported already): thinc
    then goes without it for good in this process, which the pattern recognizers never miss."""
    if not hide or "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # an import of torch raises ImportError meanwhile
    try:
        yield
    finally:
        if "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]


def _build_analyzer(entities: list[str], ner_model: str | None):
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
    from presidio_analyzer.nlp_engine import NoOpNlpEngine, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import EmailRecognizer, IbanRecognizer, IpRecognizer, UsSsnRecognizer

    # Presidio's EmailRecognizer uses tldextract's module-level extractor, which fetches the suffix list on first use.
    offline_suffixes = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_suffixes(pattern_text).fqdn != ""

    class PublicIpRecognizer(IpRecognizer):
        def invalidate_result(self, pattern_text: str) -> bool:
            return not is_public_ip(pattern_text)

    recognizers = {
        "email": OfflineEmailRecognizer,
        "ip": PublicIpRecognizer,
        "iban": IbanRecognizer,
        "us_ssn": UsSsnRecognizer,
    }
    registry = RecognizerRegistry(recognizers=[recognizers[name]() for name in entities if name in recognizers])
    if ner_model is None:
        nlp_engine = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    else:
        problem = ner_model_problem(ner_model)
        if problem:
            raise StageSetupError("ner_model", problem)
        nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": ner_model}])
    nlp_engine.load()
    with warnings.catch_warnings():  # "NoOp engine: only context passed to analyze() is used": that is the design
        warnings.simplefilter("ignore", UserWarning)
        return AnalyzerEngine(
            registry=registry,
            nlp_engine=nlp_engine,
            supported_languages=["en"],
            context_aware_enhancer=LemmaContextAwareEnhancer(context_matching_mode="whole_word"),
        )
