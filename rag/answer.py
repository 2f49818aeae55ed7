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

import numpy as np

from bm25s.stopwords import STOPWORDS_EN

from rag import store
from rag.nlp_data import english_stopwords
from rag.retrieval import Hit, Retriever, Sentence
from rag.schema import Answer, Citation
from rag.settings import Settings

REFUSAL = "The documents do not say."

# Words that say what kind of answer is wanted rather than what it is about.
_QUESTION_WORDS = {
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "many", "much", "long", "tell",
    "me", "name", "named", "kind", "type", "according", "article", "document", "documents", "text",
    "say", "says", "said", "mention", "mentioned", "give", "describe", "explain", "list", "also", "ago",
    "around", "approximately", "roughly", "exactly", "total", "number", "amount", "date", "year", "time",
    "day", "month", "would", "could", "get", "got", "us", "one", "ones", "thing", "things",
    # prepositions and connectives nltk's list lacks
    "beyond", "besides", "apart", "except", "within", "among", "amongst", "per", "via", "toward", "towards",
    "upon", "onto", "across", "along", "behind", "despite", "regarding", "concerning", "including", "like",
    "unlike", "whether", "either", "neither", "yet", "still", "already", "ever", "even", "else",
    "big", "large", "high", "old", "far", "thanks",
}
# nltk's English list, bundled with llama-index (bm25s' own list is too short for judging questions).
STOPWORDS = set(english_stopwords()) | set(STOPWORDS_EN) | _QUESTION_WORDS
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

_MEASURES = (r"(?:area|population|size|gdp|revenue|revenues|turnover|price|cost|budget|height|length|weight|"
             r"capacity|value|salary|rate|percentage|share|volume|output|worth|sum|amount|number|count|total)")
_TYPE_RULES: list[tuple[str, re.Pattern]] = [
    ("duration", re.compile(r"\bhow long\b|\bhow much time\b|\bhow many (hours|days|minutes|weeks|months|years)\b")),
    ("date", re.compile(r"^\W*(and |so |but )?when\b|\b(what|which|in what) (year|date|month|day)\b|\bsince when\b")),
    ("number", re.compile(rf"\bhow (many|much|big|large|high|old|far)\b|\b(what|which) (is|was|are|were) the "
                          rf"(\w+ )?{_MEASURES}\b|\bwhat {_MEASURES}\b|\b{_MEASURES} of\b")),
    ("person", re.compile(r"^\s*(who|whom|whose)\b")),
    ("name", re.compile(r"^\s*(which|where)\b|\b(which|where)\b|\bwhat is the name\b")),
]


def answer_type(question: str) -> str | None:
    """What kind of short answer the question wants: duration, date, number, person, name, or None."""
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
    credit: dict[str, float]  # question term stem -> how well this sentence covers it (0..1)
    names_present: bool  # the names the question mentions are in this sentence's chunk
    short_answer: str | None = None

    @property
    def score(self) -> float:
        return self.support + 0.5 * self.similarity


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def _stem(words: list[str]) -> list[str]:
    return store.STEMMER.stemWords(words)


class ExtractiveAnswerer:
    """Answers from the evidence sentences only; refuses when no sentence supports the question."""

    # Word-embedding cosine between a question word and a sentence word: below the floor they are
    # unrelated, above the ceiling they stand for each other; in between they count in proportion.
    synonym_floor = 0.4
    synonym_ceiling = 0.75
    support_margin = 0.35  # how far below the best sentence's support a typed answer may still be taken
    counted_similarity = 0.5  # word cosine at which "deals" counts as the "agreements" after a number
    embedded_sentences = 30  # sentences compared with the question by embedding
    synonym_sentences = 12  # sentences, best first, searched for synonyms of the question's words
    inherited_weight = 0.3  # weight of a word a follow-up's query inherited from earlier turns
    focus_credit = 0.6  # least credit of the focus word (see focus_words) in a sentence giving a typed answer

    def __init__(self, retriever: Retriever, settings: Settings) -> None:
        self.retriever = retriever
        self.settings = settings

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
        terms = self.question_terms(question)
        own = {t.stem for t in terms}
        # Words a follow-up inherited from the conversation count, but less than its own words.
        terms += [Term(t.word, t.stem, t.weight * self.inherited_weight)
                  for t in self.question_terms(query) if t.stem not in own]
        names = {n for n in _stem(names_in(query)) if not self.retriever.is_common(n)}
        chunk_stems: dict[int, set[str]] = {}
        evidence = []
        for sentence in sentences:
            support, credit = self._support(terms, sentence.text, synonyms=False)
            context = chunk_stems.setdefault(
                sentence.hit.chunk_id, set(_stem(_WORD.findall(sentence.hit.chunk.text.lower())))
            )
            named = len(names & context) >= names_required(names) * len(names)
            evidence.append(Evidence(sentence, support, 0.0, credit, named))
        # Embedding sentences is the slow step: embed those of the two best chunks (paraphrases share no
        # words with the question) and the best of the rest by word overlap.
        best_chunks = {hit.chunk_id for hit in hits[:2]}
        first = [e for e in evidence if e.sentence.hit.chunk_id in best_chunks]
        rest = sorted((e for e in evidence if e.sentence.hit.chunk_id not in best_chunks), key=lambda e: -e.support)
        evidence = (first + rest)[: max(self.embedded_sentences, len(first))]
        vectors = self.retriever.embed_texts([query] + [e.sentence.text for e in evidence])
        for item, similarity in zip(evidence, vectors[1:] @ vectors[0]):
            item.similarity = float(similarity)
        # Synonyms cost a word embedding each: look for them only in the likeliest sentences.
        evidence.sort(key=lambda e: -e.score)
        for item in evidence[: self.synonym_sentences]:
            item.support, item.credit = self._support(terms, item.sentence.text, synonyms=True)
        evidence.sort(key=lambda e: -e.score)
        return evidence

    def _support(self, terms: list[Term], text: str, synonyms: bool) -> tuple[float, dict[str, float]]:
        """IDF-weighted share of question terms found in `text`, literally or as a near synonym, and
        each term's credit."""
        total = sum(t.weight for t in terms)
        if not total:
            return 0.0, {}
        words = list(dict.fromkeys(content_words(text)))
        stems = set(_stem(words))
        credit = {t.stem: 1.0 for t in terms if t.stem in stems}
        # Numbers match only literally: "8,102" is no synonym of "population".
        missing = [t for t in terms if t.stem not in stems and t.word.isalpha()]
        words = [w for w in words if w.isalpha()]
        if synonyms and missing and words:
            vectors = self.retriever.embed_texts([t.word for t in missing] + words)
            best = (vectors[len(missing) :] @ vectors[: len(missing)].T).max(axis=0)
            span = self.synonym_ceiling - self.synonym_floor
            for term, sim in zip(missing, best):
                credit[term.stem] = float(np.clip((sim - self.synonym_floor) / span, 0.0, 1.0))
        return sum(t.weight * credit.get(t.stem, 0.0) for t in terms) / total, credit

    def supports(self, evidence: Evidence) -> bool:
        return (
            evidence.names_present
            and evidence.support >= self.settings.min_support
            and evidence.similarity >= self.settings.min_similarity
        )

    def covers_focus(self, evidence: Evidence, focus: list[str]) -> bool:
        """Whether the sentence speaks of what is asked ("population" in "What is the population of X?",
        "founded" in "When was X founded?"): literally or as a near synonym. No focus word, no constraint."""
        if not focus:
            return True
        stems = _stem(focus)
        return max(evidence.credit.get(stem, 0.0) for stem in stems) >= self.focus_credit

    def answer(self, question: str, query: str, hits: list[Hit]) -> Answer:
        evidence = self.rank_evidence(question, query, hits)
        kind = answer_type(question)
        chosen = self._choose(evidence, kind, question, query)
        if chosen is None:
            closest = evidence[: self.settings.max_citations]
            return Answer(
                text=f"{REFUSAL} The closest passages are listed below, but none of them answers the question.",
                citations=[_citation(e) for e in closest],
                refused=True,
                query=query,
            )
        quote = _fit_quote(chosen.sentence.text, chosen.short_answer, self.settings.max_answer_chars - 40)
        lead = f"{chosen.short_answer} — " if chosen.short_answer else ""
        return Answer(
            text=f'{lead}"{quote}" [1]',
            citations=[_citation(chosen, quote)],
            refused=False,
            query=query,
            short_answer=chosen.short_answer,
        )

    def _choose(self, evidence: list[Evidence], kind: str | None, question: str, query: str = "") -> Evidence | None:
        """The best supporting sentence that holds the kind of answer asked for (any, for open questions).

        Only sentences about as supportive as the best one are searched for a typed answer: a date in a
        weaker sentence is usually the date of something else. What a follow-up's query inherited from the
        conversation ("OPPO" for "its product series") is what the question is about, so it is not an answer
        either, as the question's own words are not.
        """
        known = f"{question} {query}"
        supporting = [e for e in evidence if self.supports(e)]
        period = period_asked(question)
        if period:  # a figure with no year attached is not the figure for the year asked about
            supporting = [e for e in supporting if in_period(period, f"{e.sentence.previous} {e.sentence.text}")]
        if not supporting:
            return None
        if kind is None:
            return supporting[0]
        floor = max(e.support for e in supporting) - self.support_margin
        if kind == "name":  # "which ...": the best sentence answers, led by a name when it holds one
            best = supporting[0]
            best.short_answer = find_short_answer(kind, best.sentence.text, question, known)
            if best.short_answer or not candidates(kind, best.sentence.text, question):
                return best
            # Its only names are the conversation's subject: a close sentence naming something else answers.
            for item in (e for e in supporting[1:] if e.support >= floor):
                item.short_answer = find_short_answer(kind, item.sentence.text, question, known)
                if item.short_answer:
                    return item
            return best
        counted = counted_words(question) if kind == "number" else []
        focus = focus_words(question)
        for item in (e for e in supporting if e.support >= floor and self.covers_focus(e, focus)):
            found = candidates(kind, item.sentence.text, known)
            if counted:
                found = [c for c in found if self._counts(counted, item.sentence.text[c[1] :])]
            item.short_answer = nearest_to_question(found, item.sentence.text, question)
            if item.short_answer:
                return item
        return None

    def _counts(self, counted: list[str], after: str) -> bool:
        """Whether the words right after a number name what "how many ..." asks to count."""
        following = content_words(after)[:4]
        if not following:
            return False
        if set(_stem(counted)) & set(_stem(following)):
            return True
        vectors = self.retriever.embed_texts(counted + following)
        return float((vectors[: len(counted)] @ vectors[len(counted) :].T).max()) >= self.counted_similarity


def names_in(question: str) -> list[str]:
    """Capitalised words not opening a sentence ("OPPO", "Hong", "Kong"): names a passage must mention to
    be about the same thing. Paraphrase does not reach names, so they are matched literally. A name in
    parentheses only spells out its neighbour ("DAG (Directed Acyclic Graph)") and is left out."""
    words = []
    for sentence in re.split(r"(?<=[.?!])\s+", re.sub(r"\([^)]*\)", " ", question)):
        for token in re.findall(r"[A-Za-z][\w'’-]*", sentence)[1:]:
            token = re.sub(r"['’]s$", "", token)
            if token[0].isupper() and token.lower() not in STOPWORDS:
                words += [w for w in _WORD.findall(token.lower()) if w not in STOPWORDS]
    return list(dict.fromkeys(words))


def names_required(names: set[str]) -> float:
    """Share of the question's names a passage must mention: all of one or two; half of more, since a
    question comparing many things is answered by passages naming some of them."""
    return 1.0 if len(names) <= 2 else 0.5


_FOCUS_PATTERNS = [
    re.compile(r"\b(?:what|which|who) (?:is|was|are|were) the ([a-z][\w-]*) (?:of|in|at|for|behind)\b"),  # the population of
    re.compile(r"^\s*who (?!is\b|was\b|are\b|were\b)([a-z]{3,})\b"),  # who organised X
]


_GENERIC_MEASURES = {"size", "value", "amount", "number", "total", "name", "sum", "figure", "level", "scale"}


def focus_words(question: str) -> list[str]:
    """The word naming what a number, date or person question asks about, when the wording shows it."""
    lowered = question.lower()
    for pattern in _FOCUS_PATTERNS:
        match = pattern.search(lowered)
        if match and match.group(1) not in STOPWORDS and match.group(1) not in _GENERIC_MEASURES:
            return [match.group(1)]
    return []


# A question limited to a year: "last year", "this year", "in 2019" (not "in what year", which asks for one,
# nor "over the years").
_PERIOD = re.compile(r"\b(?:last|this|next|past|previous|current)\s+(?:fiscal\s+|calendar\s+)?year\b"
                     r"|\b(?:in|during|for|by|of)\s+((?:1[5-9]|20)\d{2})\b", re.IGNORECASE)
_YEAR_LEVEL = re.compile(r"\b(?:1[5-9]|20)\d{2}s?\b|\b(?:last|this|next|past|previous|current|each|every|per|a)\s+"
                         r"(?:fiscal\s+|calendar\s+)?year\b|\bannual(?:ly)?\b|\byearly\b", re.IGNORECASE)


def period_asked(question: str) -> str | None:
    """The year a question is limited to ("2019"), "year" for a relative one ("last year"), or None."""
    match = _PERIOD.search(question)
    if not match:
        return None
    return match.group(1) or "year"


def in_period(period: str, text: str) -> bool:
    """Whether `text` places what it says in a year: the year asked about, or for "last year" any year or
    yearly wording. A figure from a dated event ("On March 17 ...") does not answer for a year."""
    if period != "year":
        return re.search(rf"\b{period}\b", text) is not None
    return _YEAR_LEVEL.search(text) is not None


def counted_words(question: str) -> list[str]:
    """The noun phrase after "how many": "How many Hong Kong-invested enterprises has..." -> its words."""
    match = re.search(r"\bhow many\s+(.+)", question.lower())
    words: list[str] = []
    for word in _WORD.findall(match.group(1)) if match else []:
        if word in STOPWORDS:
            break
        words.append(word)
    return words[:4]


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


_NOT_NAMES = re.compile(rf"^(?:{_MONTH}|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)$")
_LEADING_FILLER = re.compile(
    r"^(?:The|A|An|This|That|These|Those|Its|Their|In|On|At|By|For|With|From|Since|Similarly|Moreover|Meanwhile|"
    r"However|Also|And|But|Now|Today|Thanks)\s+"
)


Candidate = tuple[int, int, str]  # start, end, text in the sentence


def find_short_answer(kind: str, sentence: str, question: str, known: str | None = None) -> str | None:
    """The candidate of the wanted kind nearest to the question's words in the sentence, not one `known`
    (default: the question) already contains."""
    return nearest_to_question(candidates(kind, sentence, known or question), sentence, question)


def candidates(kind: str, sentence: str, known: str) -> list[Candidate]:
    """Every span of the wanted kind in the sentence that `known` (the question, or it and its query) does not
    already contain."""
    known_lower = known.lower()
    pattern = _PATTERNS["name" if kind in ("person", "name") else kind]
    spans = [(m.start(), m.end()) for m in pattern.finditer(sentence)]
    if kind == "number":
        # A number inside a date ("March 17") or a duration is not a count.
        taken = [(m.start(), m.end()) for k in ("date", "duration") for m in _PATTERNS[k].finditer(sentence)]
        spans = [s for s in spans if not any(a <= s[0] < b for a, b in taken)]
    found: list[Candidate] = []
    for start, end in spans:
        text = sentence[start:end].strip()
        if kind in ("person", "name"):
            text = _LEADING_FILLER.sub("", text)
            text = re.sub(r"['’]s$", "", text)
            if len(text) < 2 or text.lower() in STOPWORDS or _NOT_NAMES.match(text):
                continue
        if text.lower() in known_lower:
            continue
        found.append((start, end, text))
    return found


def nearest_to_question(found: list[Candidate], sentence: str, question: str) -> str | None:
    if not found:
        return None
    q_stems = set(_stem(content_words(question)))
    positions = [m.start() for m in _WORD.finditer(sentence) if _stem([m.group().lower()])[0] in q_stems]

    def distance(candidate: Candidate) -> float:
        start, end, _ = candidate
        if not positions:
            return start
        return min(start - p if p < start else max(p - end, 0) for p in positions)

    return min(found, key=distance)[2]


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

