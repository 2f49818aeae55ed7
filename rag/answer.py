"""The extractive answerer: find the sentence that answers, lead with the short answer, quote, cite, or refuse.

No model writes text here, so every word of a quote comes from the corpus. The hard part is knowing
when the documents do not answer: a retriever always returns *something*. The test used is what the
question asks about: each informative question word (weighted by how rare it is in the corpus) must be
found in the evidence sentence, literally or as a close synonym by word embedding; and a question that
asks for a number, date or name must find one there. "What is the population of Dongguan?" retrieves a
confident sentence about Dongguan, but nothing in it speaks of population, so the assistant refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bm25s.stopwords import STOPWORDS_EN

from rag import store
from rag.retrieval import Hit, Retriever, Sentence
from rag.schema import Answer, Citation

REFUSAL = "The documents do not say."

# Words that say what kind of answer is wanted rather than what it is about.
_QUESTION_WORDS = {
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "many", "much", "long", "tell",
    "me", "about", "name", "named", "kind", "type", "according", "article", "document", "documents", "text",
    "say", "says", "said", "mention", "mentioned", "give", "describe", "explain", "list", "also", "ago",
    "around", "approximately", "roughly", "exactly", "total", "number", "amount", "date", "year", "time",
    "day", "month", "did", "does", "do", "is", "are", "was", "were", "has", "have", "had", "can", "could",
    "would", "should", "will", "its", "it", "they", "them", "their", "there", "this", "that", "these", "those",
}
STOPWORDS = set(STOPWORDS_EN) | _QUESTION_WORDS
_WORD = re.compile(r"(?u)\b\w\w+\b")

_NUMBER_WORDS = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|a few|several|a couple of)"
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
    r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_TIME_UNIT = r"(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?|decades?)"
_PATTERNS: dict[str, re.Pattern] = {
    "date": re.compile(
        rf"\b(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?|\d{{1,2}}\s+{_MONTH}(?:\s+\d{{4}})?"
        rf"|{_MONTH}\s+\d{{4}}|(?:1[5-9]|20)\d{{2}}s?"
        rf"|(?:\d+|{_NUMBER_WORDS})\s+{_TIME_UNIT}\s+ago)\b"
    ),
    "duration": re.compile(rf"\b(?:\d+(?:\.\d+)?|{_NUMBER_WORDS})[\s-]{_TIME_UNIT}\b"),
    "number": re.compile(
        r"(?<![\w.+$])(?:US\$|HK\$|\$|RMB ?|¥|€|£)?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
        r"(?:\s?%|\s?percent|(?:[- ](?:thousand|million|billion|trillion))?(?:[- ](?:yuan|RMB|dollars|USD|HKD|euros))?)"
        r"(?![\w+])"
    ),
    "name": re.compile(
        r"\b[A-Z][\w&'’.+-]*(?:\s+(?:(?:of|and|for|the|de|&)\s+)*[A-Z][\w&'’.+-]*)*(?:\s+\([A-Z][\w\s]*\))?"
    ),
}

_TYPE_RULES: list[tuple[str, re.Pattern]] = [
    ("duration", re.compile(r"\bhow long\b|\bhow much time\b|\bhow many (hours|days|minutes|weeks|months|years)\b")),
    ("date", re.compile(r"\bwhen\b|\b(what|which|in what) (year|date|month|day)\b|\bsince when\b")),
    ("number", re.compile(r"\bhow (many|much|big|large|high|old)\b|\b(number|percentage|share|amount|size|value) of\b"
                          r"|\bwhat (percentage|amount|number|value|sum|size)\b|\bworth\b")),
    ("name", re.compile(r"^\s*(who|whom|whose)\b|\bwhich (company|companies|university|universities|organi[sz]ations?"
                        r"|institutions?|person|firm|group|agency|council|body|brand|team|city|country|zone|area"
                        r"|district|place|region|park|plan|initiative|programme|program|fund|series|product)\b"
                        r"|\bwhere\b|\bwhat is the name\b|\bin (which|what) (city|country|place)\b")),
]


def answer_type(question: str) -> str | None:
    """What kind of short answer the question wants: number, date, duration, name, or None (a sentence)."""
    lowered = question.lower()
    for kind, rule in _TYPE_RULES:
        if rule.search(lowered):
            return kind
    return None


@dataclass(frozen=True)
class Term:
    word: str
    stem: str
    weight: float


@dataclass
class Evidence:
    sentence: Sentence
    support: float  # weighted share of question terms this sentence covers
    similarity: float  # cosine of sentence and query embeddings
    short_answer: str | None = None

    @property
    def score(self) -> float:
        return self.support + 0.5 * self.similarity


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def _stem(words: list[str]) -> list[str]:
    return store.STEMMER.stemWords(words)


class ExtractiveAnswerer:
    """Answers from the evidence sentences only. `min_support` is the refusal threshold."""

    synonym_threshold = 0.62  # word-embedding cosine at which a corpus word stands for a question word

    def __init__(self, retriever: Retriever, min_support: float, max_citations: int, max_answer_chars: int) -> None:
        self.retriever = retriever
        self.min_support = min_support
        self.max_citations = max_citations
        self.max_answer_chars = max_answer_chars

    def question_terms(self, question: str) -> list[Term]:
        words = list(dict.fromkeys(content_words(question)))
        stems = _stem(words)
        seen, terms = set(), []
        for word, stem in zip(words, stems):
            if stem in seen:
                continue
            seen.add(stem)
            terms.append(Term(word, stem, self.retriever.idf(stem)))
        return terms

    def rank_evidence(self, question: str, query: str, hits: list[Hit]) -> list[Evidence]:
        sentences = self.retriever.sentences(hits)
        if not sentences:
            return []
        terms = self.question_terms(query)
        vectors = self.retriever.embed_texts([query] + [s.text for s in sentences])
        similarities = vectors[1:] @ vectors[0]
        evidence = [
            Evidence(s, self._support(terms, s.text), float(sim)) for s, sim in zip(sentences, similarities)
        ]
        evidence.sort(key=lambda e: -e.score)
        return evidence

    def _support(self, terms: list[Term], text: str) -> float:
        """IDF-weighted share of question terms found in `text`, literally or as a close synonym."""
        if not terms:
            return 0.0
        words = list(dict.fromkeys(content_words(text)))
        stems = set(_stem(words))
        missing = [t for t in terms if t.stem not in stems]
        covered = {t.stem: 1.0 for t in terms if t.stem in stems}
        if missing and words:
            vectors = self.retriever.embed_texts([t.word for t in missing] + words)
            best = (vectors[len(missing):] @ vectors[: len(missing)].T).max(axis=0)
            for term, sim in zip(missing, best):
                if sim >= self.synonym_threshold:
                    covered[term.stem] = float(sim)
        total = sum(t.weight for t in terms)
        return sum(t.weight * covered.get(t.stem, 0.0) for t in terms) / total if total else 0.0

    def answer(self, question: str, query: str, hits: list[Hit]) -> Answer:
        evidence = self.rank_evidence(question, query, hits)
        kind = answer_type(question)
        chosen: Evidence | None = None
        for item in evidence:
            if item.support < self.min_support:
                continue
            if kind is None:
                chosen = item
                break
            short = find_short_answer(kind, item.sentence.text, question)
            if short:
                item.short_answer = short
                chosen = item
                break
        if chosen is None:
            closest = evidence[: self.max_citations]
            return Answer(
                text=f"{REFUSAL} The closest passages are listed below, but none of them answers the question.",
                citations=[_citation(e) for e in closest],
                refused=True,
                query=query,
            )
        quote = _fit_quote(chosen.sentence.text, chosen.short_answer, self.max_answer_chars - 40)
        lead = f"{chosen.short_answer} — " if chosen.short_answer else ""
        text = f'{lead}"{quote}" [1]'
        return Answer(text=text, citations=[_citation(chosen, quote)], refused=False, query=query,
                      short_answer=chosen.short_answer)


def _citation(evidence: Evidence, quote: str | None = None) -> Citation:
    sentence = evidence.sentence
    text = quote.strip("…") if quote else sentence.text
    offset = sentence.text.find(text)
    start = sentence.start + max(offset, 0)
    return Citation(
        source=sentence.hit.chunk.source,
        page=sentence.hit.chunk.page,
        start=start,
        end=start + len(text),
        text=text,
        score=round(evidence.score, 4),
        chunk_id=sentence.hit.chunk.chunk_id,
    )


def find_short_answer(kind: str, sentence: str, question: str) -> str | None:
    """The candidate of the wanted kind nearest to the question's words in the sentence, not one the
    question already contains."""
    question_lower = question.lower()
    spans = [(m.start(), m.end()) for m in _PATTERNS[kind].finditer(sentence)]
    if kind == "number":
        # A number inside a date ("March 17") or a duration is not a count.
        taken = [(m.start(), m.end()) for k in ("date", "duration") for m in _PATTERNS[k].finditer(sentence)]
        spans = [s for s in spans if not any(a <= s[0] < b for a, b in taken)]
    candidates = []
    for start, end in spans:
        text = sentence[start:end].strip()
        if kind == "name":
            text = re.sub(r"^(The|A|An|This|That|These|Its|In|On|At|By|For|With|Since|Similarly|Moreover|Meanwhile)\s+",
                          "", text)
            if not text or text.lower() in STOPWORDS or len(text) < 2:
                continue
        if text.lower() in question_lower:
            continue
        candidates.append((start, end, text))
    if not candidates:
        return None
    q_stems = set(_stem(content_words(question)))
    positions = [m.start() for m in _WORD.finditer(sentence) if _stem([m.group().lower()])[0] in q_stems]

    def distance(candidate: tuple[int, int, str]) -> float:
        start, end, _ = candidate
        if not positions:
            return start
        return min(abs(p - start) if p < start else abs(p - end) for p in positions)

    return min(candidates, key=distance)[2]


def _fit_quote(sentence: str, short_answer: str | None, limit: int) -> str:
    """The sentence, or the part of it around the short answer when it is too long; '…' marks a cut."""
    if len(sentence) <= limit:
        return sentence
    anchor = sentence.find(short_answer) if short_answer else 0
    anchor = max(anchor, 0)
    start = max(0, min(anchor - limit // 2, len(sentence) - limit))
    start = sentence.rfind(" ", 0, start) + 1 if start > 0 else 0
    end = min(len(sentence), start + limit)
    end = sentence.rfind(" ", start, end) if end < len(sentence) else end
    return ("…" if start > 0 else "") + sentence[start:end] + ("…" if end < len(sentence) else "")

