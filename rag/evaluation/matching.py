"""Answer matching: how an answer, a chunk or a cited sentence is compared with what a question accepts.

Definitions are in README.md ("Evaluation", "Matching an answer"); every metric that compares text goes
through `normalise`.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

from rag.schema import Answer

MAX_ANSWER_CHARS = 400  # a longer answer is a paragraph dump, not an answer: scored wrong
NGRAM = 5  # reference-context overlap: word n-grams of this length

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# A word a PDF hyphenated at a line end ("in-\ntegrity", as reference contexts extracted from PDFs keep it) is
# one word, as the loader makes it (rag/loaders.py, PDF_HYPHENATION).
_LINE_END_HYPHEN = re.compile(r"(?<=\w)-[ \t]*\r?\n\s*(?=\w)")
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_PUNCTUATION = re.compile(r"[^\w\s\x00]|_")
_CITATION_MARK = re.compile(r"\s*\[\d+\]")
_ARTICLES = frozenset({"a", "an", "the"})
# Small numbers written out are the same answer as their digits ("three" = "3"). "one" is left alone: it is
# mostly a pronoun ("one of the first"), and reading it as 1 would accept wrong answers.
_NUMBER_WORDS = {word: str(value) for value, word in enumerate(
    "zero _ two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split()) if word != "_"}


def normalise(text: str) -> str:
    """Casefold, join a word hyphenated at a line end ("in-" ending a line, "tegrity" opening the next ->
    "integrity"), drop thousands separators ("8,102" -> "8102"), keep decimal points ("18.47"), turn every
    other punctuation character into a space ("5-billion-yuan" -> "5 billion yuan"), collapse whitespace, and
    read small numbers written out as digits ("three" -> "3"). Both an accepted answer and the answer text go
    through this before comparing."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _LINE_END_HYPHEN.sub("", text)
    text = _THOUSANDS.sub("", text)
    text = _DECIMAL_POINT.sub("\x00", text)
    text = _PUNCTUATION.sub(" ", text)
    return " ".join(_NUMBER_WORDS.get(word, word) for word in text.replace("\x00", ".").split())


def contains_answer(text: str, accepted: str) -> bool:
    """`accepted` occurs in `text` as whole words after normalising both ("300" is not in "3000")."""
    needle = normalise(accepted)
    return bool(needle) and f" {needle} " in f" {normalise(text)} "


def answer_is_correct(answer: Answer, accepted: Sequence[str]) -> bool:
    """Right when not a refusal, at most MAX_ANSWER_CHARS long, and containing an accepted string."""
    if answer.refused or len(answer.text) > MAX_ANSWER_CHARS:
        return False
    return any(contains_answer(answer.text, a) for a in accepted)


def scoring_text(answer_text: str) -> str:
    """The answer without citation marks ("[1]"): they are not words of the answer."""
    return _CITATION_MARK.sub("", answer_text)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1 on normalised tokens, articles removed."""
    pred = [t for t in normalise(prediction).split() if t not in _ARTICLES]
    ref = [t for t in normalise(reference).split() if t not in _ARTICLES]
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def word_ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    words = normalise(text).split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def contexts_overlap(chunk: str, context: str, n: int = NGRAM) -> bool:
    """A retrieved chunk matches a reference context when at least half of the word n-grams of either
    one are in the other (texts shorter than n words are compared as their whole word sequence)."""
    n = min(n, len(normalise(chunk).split()), len(normalise(context).split()))
    if n == 0:
        return False
    a, b = word_ngrams(chunk, n), word_ngrams(context, n)
    shared = len(a & b)
    return shared >= len(a) / 2 or shared >= len(b) / 2



def lies_in_context(sentence: str, contexts: Sequence[str], n: int = NGRAM) -> bool:
    """A cited sentence lies inside a reference context when, after normalising both, the context holds
    it as whole words, or holds at least half of its word n-grams (a PDF's hyphenation or a page break can
    change a word or two of the same sentence)."""
    needle = normalise(sentence)
    if not needle:
        return False
    words = needle.split()
    size = min(n, len(words))
    grams = word_ngrams(sentence, size)
    for context in contexts:
        if f" {needle} " in f" {normalise(context)} ":
            return True
        if grams and len(grams & word_ngrams(context, size)) >= len(grams) / 2:
            return True
    return False
