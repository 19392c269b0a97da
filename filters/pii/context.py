"""Presidio's context words around one match, without running spaCy over the whole text.

Presidio's `LemmaContextAwareEnhancer` raises a match's score when one of its recognizer's context
words ("phone", "ssn" …) occurs in the lemmas of the few keyword tokens before it. In pattern mode
the pipeline is `spacy.blank("en")`, so the lemma of a token is its lower-cased text, and which
tokens exist is spaCy's tokenizer's business. Presidio tokenizes the whole text for that; here only
the runs around a match are, and the answer is the same because:

- spaCy's tokenizer cuts the text into runs of whitespace and non-whitespace (`str.isspace`) and
  tokenizes each run on its own (a single ' ' after a token belongs to that token; any other
  whitespace run, minus that one ' ', is a token of its own), so a run's tokens do not depend on
  the rest of the text;
- a lemma counts as a keyword when it is in the text's keyword list: the lemmas that are not stop
  words, punctuation, "-PRON-" or "be", each split at ':'. `str.lower` is idempotent, so a token
  whose own lemma is not a keyword is in the list only as a piece of another token's lemma split at
  ':', and such a token lies in a run holding a ':' (found with `str.find`, tokenized on demand).

A test compares this, token for token and score for score, with Presidio's own path on a corpus.
"""

from __future__ import annotations

from spacy.language import Language

# Bounded memo sizes: runs are words, and words repeat; past the bound the memo starts over.
_MAX_RUNS = 8192
_MAX_WORDS = 8192


SIGMAS = "\u03c3\u03c2"
"""Lower-case sigma and final sigma: the one letter whose lower case depends on its neighbours."""

_Token = tuple[int, int, str]
"""A token: start and end offsets in the text, and its lemma (lower-cased text)."""


class RunTokenizer:
    """spaCy's tokenization of single runs, with Presidio's keyword test, both memoized."""

    def __init__(self, nlp: Language) -> None:
        self._tokenize = nlp.tokenizer
        self._vocab = nlp.vocab
        self._runs: dict[str, tuple[tuple[int, int, str], ...]] = {}
        self._keywords: dict[str, bool] = {}

    def tokens(self, run: str) -> tuple[tuple[int, int, str], ...]:
        """(offset in `run`, end offset, lower-cased text) of each token spaCy makes of `run`.

        The end is the token's, not its lower-cased text's: lower-casing may change a length.
        """
        found = self._runs.get(run)
        if found is None:
            found = tuple((t.idx, t.idx + len(t), t.lower_) for t in self._tokenize(run))
            if len(self._runs) >= _MAX_RUNS:
                self._runs.clear()
            self._runs[run] = found
        return found

    def is_keyword(self, lemma: str) -> bool:
        """Presidio's test (`NlpArtifacts.set_keywords`) for one lemma, before the ':' split."""
        found = self._keywords.get(lemma)
        if found is None:
            lexeme = self._vocab[lemma]
            found = not (lexeme.is_stop or lexeme.is_punct or lemma == "-PRON-" or lemma == "be")
            if len(self._keywords) >= _MAX_WORDS:
                self._keywords.clear()
            self._keywords[lemma] = found
        return found


class ContextWindow:
    """The tokens of one text near given offsets, as Presidio's enhancer would see them.

    Built per analysed text (cheap: nothing is tokenized until asked).
    """

    def __init__(self, text: str, tokenizer: RunTokenizer) -> None:
        self._text = text
        self._tok = tokenizer
        self._colon_parts: frozenset[str] | None = None
        self._lower: str | None = None
        self._support: dict[tuple[str, ...], bool] = {}

    def could_support(self, words: tuple[str, ...]) -> bool:
        """False only if no token of the text can count as one of the context `words`.

        Presidio counts a context word when it is a substring of a keyword lemma near the match.
        A lemma is its token's text lower-cased, and lower-casing maps character by character
        (but for the Greek final sigma), so such a word also occurs in the lower-cased text; when
        that text is as long as the original, at the same offsets. So: no occurrence, no support;
        and when every occurrence lies in a run none of whose listed tokens holds the word, none
        either. `words` must be lower-case and hold no sigma (the caller checks).
        """
        known = self._support.get(words)
        if known is None:
            known = self._support[words] = self._could_support(words)
        return known

    def _could_support(self, words: tuple[str, ...]) -> bool:
        text = self._text
        lower = self._lowered()
        exact = len(lower) == len(text)
        for word in words:
            at = lower.find(word)
            if at >= 0 and not exact:
                return True  # offsets do not carry over: let the full walk decide
            while at >= 0:
                start = self._run_start(at)
                tokens: list[_Token] = []
                end = self._append_run(start, tokens)
                if any(word in w and self._is_listed(w, w.lower()) for _, _, w in tokens):
                    return True
                at = lower.find(word, max(end, at + 1))
        return False

    def surrounding_words(self, start: int, before: int, after: int) -> list[str]:
        """What `LemmaContextAwareEnhancer._extract_surrounding_words` returns for a match at
        `start` (as a set turned list, so compare it as a set).

        Raises:
            ValueError: where Presidio's enhancer raises it (no token ends after `start`).
        """
        text = self._text
        # The run holding `start`, and its tokens; then runs to the left and right as needed.
        run_start = self._run_start(start)
        left: list[_Token] = []  # tokens from the run start leftwards, reversed
        right: list[_Token] = []  # tokens from the run start rightwards
        pos = run_start
        while pos < len(text) and (not right or right[-1][1] <= start):
            pos = self._append_run(pos, right)
        # Presidio's match token: the first whose end lies after `start` (or that starts at it).
        index = next(
            (i for i, (idx, end, _) in enumerate(right) if idx == start or start < end), None
        )
        if index is None:
            raise ValueError("a match lies past the last token")
        backward = [w for _, _, w in reversed(right[: index + 1])]
        forward = [w for _, _, w in right[index:]]
        words: list[str] = []
        collected = self._collect(backward, before + 1, words)
        left_pos = run_start
        while collected < before + 1 and left_pos > 0:
            left.clear()
            left_pos = self._prepend_run(left_pos, left)
            collected += self._collect(
                [w for _, _, w in reversed(left)], before + 1 - collected, words
            )
        ahead = self._collect(forward, after + 1, words)
        while ahead < after + 1 and pos < len(text):
            more: list[_Token] = []
            pos = self._append_run(pos, more)
            ahead += self._collect([w for _, _, w in more], after + 1 - ahead, words)
        return list(set(words))

    def _collect(self, lemmas: list[str], wanted: int, into: list[str]) -> int:
        """Presidio's `_add_n_words` over `lemmas` in walking order; returns how many it took."""
        taken = 0
        for lemma in lemmas:
            if taken >= wanted:
                break
            lower = lemma.lower()
            if self._is_listed(lemma, lower):
                into.append(lower)
                taken += 1
        return taken

    def _is_listed(self, lemma: str, lower: str) -> bool:
        # `lower in keywords`, the keywords being every keyword lemma of the text split at ':'.
        if ":" not in lower and self._tok.is_keyword(lemma):
            return True
        if ":" in lower:
            return False  # pieces of a split at ':' hold no ':'
        # A piece sits next to a ':' of its lemma, hence of the lower-cased text (but a sigma's
        # case depends on its neighbours): no such neighbour, no need to collect the pieces.
        text = self._lowered()
        if (
            not any(sigma in lower for sigma in SIGMAS)
            and f"{lower}:" not in text
            and f":{lower}" not in text
        ):
            return False
        return lower in self._colon_pieces()

    def _lowered(self) -> str:
        if self._lower is None:
            self._lower = self._text.lower()
        return self._lower

    def _colon_pieces(self) -> frozenset[str]:
        if self._colon_parts is None:
            pieces: set[str] = set()
            text = self._text
            at = text.find(":")
            while at >= 0:
                start = self._run_start(at)
                tokens: list[_Token] = []
                end = self._append_run(start, tokens)
                for _, _, lemma in tokens:
                    if ":" in lemma and self._tok.is_keyword(lemma):
                        pieces.update(lemma.lower().split(":"))
                at = text.find(":", end)
            self._colon_parts = frozenset(pieces)
        return self._colon_parts

    def _run_start(self, pos: int) -> int:
        """Start of the (whitespace or not) run holding `pos`."""
        text = self._text
        if pos >= len(text):
            pos = len(text) - 1
        space = text[pos].isspace()
        while pos > 0 and text[pos - 1].isspace() == space:
            pos -= 1
        return pos

    def _run_end(self, pos: int) -> int:
        text = self._text
        space = text[pos].isspace()
        end = pos + 1
        while end < len(text) and text[end].isspace() == space:
            end += 1
        return end

    def _run_tokens(self, start: int, end: int) -> list[_Token]:
        """Tokens (absolute offsets) of the run text[start:end]."""
        text = self._text
        if text[start] == " " and start > 0:
            start += 1  # a single ' ' after a token is that token's trailing space
            if start == end:
                return []
        return [(start + a, start + b, word) for a, b, word in self._tok.tokens(text[start:end])]

    def _append_run(self, pos: int, into: list[_Token]) -> int:
        end = self._run_end(pos)
        into.extend(self._run_tokens(pos, end))
        return end

    def _prepend_run(self, end: int, into: list[_Token]) -> int:
        start = self._run_start(end - 1)
        into.extend(self._run_tokens(start, end))
        return start
