"""Text inside images: Tesseract reads it, the PII analyzer finds entities, boxes cover them.

`presidio-image-redactor` does the OCR-to-box mapping; its text analysis is ours (the same offline
analyzer the PII filter uses, so no spaCy model is ever downloaded). Heavy imports (OpenCV among
them) happen only when OCR redaction is configured, in `OcrRedactor.load`.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

from core.config import ConfigError
from filters.pii import PIIAnalyzer

_BOX_PADDING = 2


@dataclass(frozen=True, slots=True)
class OcrFinding:
    """One entity found in an image: its type, score and place in the OCR text (no value)."""

    entity: str
    score: float
    start: int
    end: int


class _TextAnalyzer:
    """The slice of Presidio's `AnalyzerEngine` the image analyzer calls, over our analyzer."""

    def __init__(self, analyzer: PIIAnalyzer, entities: Collection[str]) -> None:
        self._analyzer = analyzer
        self._entities = tuple(entities)
        results = importlib.import_module("presidio_analyzer")
        self._result = results.RecognizerResult

    def analyze(self, text: str, **kwargs: Any) -> list[Any]:
        return [
            self._result(d.entity, d.start, d.end, d.score)
            for d in self._analyzer.analyze(text, self._entities)
        ]


class OcrRedactor:
    """Boxes out configured PII entities in images (blocking calls: run them in a thread)."""

    def __init__(self, entities: Collection[str], analyzer: PIIAnalyzer | None = None) -> None:
        """Check the entities now, so a typo fails at start.

        Raises:
            ConfigError: an entity the (pattern-mode) analyzer cannot find.
        """
        self._entities = tuple(entities)
        self._analyzer = analyzer or PIIAnalyzer()
        unknown = sorted(set(self._entities) - self._analyzer.supported)
        if unknown:
            known = ", ".join(sorted(self._analyzer.supported))
            raise ConfigError(f"filters.media.ocr_entities: unknown {unknown}; known: {known}")
        self._lock = threading.Lock()
        self._engine: Any = None

    def load(self) -> None:
        """Import the OCR stack and load the analyzer (idempotent, thread-safe).

        Raises:
            ImportError: `presidio-image-redactor` is not installed.
            OSError: the `tesseract` program is not installed.
        """
        with self._lock:
            if self._engine is not None:
                return
            with warnings.catch_warnings():
                # Its DICOM support imports a deprecated pydicom module; we never read DICOM.
                warnings.simplefilter("ignore", DeprecationWarning)
                module = importlib.import_module("presidio_image_redactor")
            # Fails here, at start, when the tesseract program is not installed.
            importlib.import_module("pytesseract").get_tesseract_version()
            self._analyzer.load()
            self._engine = module.ImageAnalyzerEngine(
                analyzer_engine=_TextAnalyzer(self._analyzer, self._entities),
                ocr=module.TesseractOCR(),
            )

    def redact(self, image: Image.Image) -> list[OcrFinding]:
        """Cover every configured entity Tesseract reads in `image`, in place; what was covered.

        Raises:
            OSError: or a pytesseract error, when Tesseract cannot run.
        """
        self.load()
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        boxes = self._engine.analyze(rgb)
        draw = ImageDraw.Draw(image)
        fill: Any = 0 if image.mode in ("L", "1", "P", "I", "F") else (0,) * len(image.getbands())
        findings: list[OcrFinding] = []
        for box in boxes:
            left, top = box.left - _BOX_PADDING, box.top - _BOX_PADDING
            right = box.left + box.width + _BOX_PADDING
            bottom = box.top + box.height + _BOX_PADDING
            draw.rectangle((left, top, right, bottom), fill=fill)
            findings.append(OcrFinding(box.entity_type, float(box.score), box.start, box.end))
        return findings
