"""The extractive answerer: find the sentence that answers, lead with the short answer, quote, cite, or refuse.

No model writes text here, so every word of a quote comes from the corpus. The hard part is knowing
when the documents do not answer: a retriever always returns *something*. The test used is what the
question asks about: each informative question word (weighted by how rare it is in the corpus) must be
found in the evidence sentence, literally or as a close synonym by word embedding; and a question that
asks for a number, date or name must find one there. "What is the population of X?" retrieves a
confident sentence about X, but nothing in it speaks of population, so the assistant refuses.

What the question asks comes from its `QuestionAnalysis`; every language rule from the language pack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from rag.language import Candidate, English, fold, get_language
from rag.question import QuestionAnalysis
from rag.retrieval import Hit, Retriever, Sentence
from rag.schema import Answer, Citation
from rag.settings import Settings

REFUSAL = "The documents do not say."


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
    names_near: bool  # ... and in this sentence or the one before it
    adds_words: bool = True  # it has a content word the question lacks (a heading repeating the question's
    # words, "Marie Curie", holds no answer)
    short_answer: str | None = None
    similarity_weight: float = 0.5  # Settings.similarity_weight

    @property
    def score(self) -> float:
        return self.support + self.similarity_weight * self.similarity


class ExtractiveAnswerer:
    """Answers from the evidence sentences only; refuses when no sentence supports the question."""

    # Every number the answerer weighs is a field of Settings (the "Answering" section).

    def __init__(self, retriever: Retriever, settings: Settings) -> None:
        self.retriever = retriever
        self.settings = settings
        self.language = get_language(settings.language)

    def question_terms(self, analysis: QuestionAnalysis) -> list[Term]:
        seen, terms = set(), []
        for word, stem in zip(analysis.words, analysis.stems):
            if stem in seen:
                continue
            seen.add(stem)
            terms.append(Term(word, stem, self.retriever.idf(stem)))
        return terms

    def rank_evidence(self, asked: QuestionAnalysis, query: QuestionAnalysis, hits: list[Hit]) -> list[Evidence]:
        sentences = self.retriever.sentences(hits)
        if not sentences:
            return []
        terms = self.question_terms(asked)
        own = {t.stem for t in terms}
        # Words a follow-up inherited from the conversation count, but less than its own words.
        terms += [Term(t.word, t.stem, t.weight * self.settings.inherited_weight)
                  for t in self.question_terms(query) if t.stem not in own]
        names = {n for n in self.language.stem(list(query.names)) if not self.retriever.is_common(n)}
        initialisms = frozenset(query.initialisms)
        question_stems = set(asked.stems) | set(query.stems)
        chunk_stems: dict[int, frozenset[str]] = {}
        title_stems: dict[str, frozenset[str]] = {}
        evidence = []
        for sentence in sentences:
            support, credit = self._support(terms, sentence.text, initialisms, synonyms=False)
            # A document names its subject in its file name ("Marie_Curie.txt") and then by part of the name
            # ("Curie"): the file name's words count as mentioned in each of its sentences.
            source = sentence.hit.chunk.source
            title = title_stems.setdefault(source, self._stems(re.sub(r"[_\W]+", " ", PurePath(source).stem), initialisms))
            context = chunk_stems.setdefault(sentence.hit.chunk_id, self._stems(sentence.hit.chunk.text, initialisms) | title)
            named = len(names & context) >= names_required(names) * len(names)
            near = self._stems(f"{sentence.previous} {sentence.text}", initialisms) | title
            # Figures count whatever their length: "The current shipment number is 5." adds the 5.
            own = self.language.content_stems(sentence.text) | set(re.findall(r"\d+", sentence.text))
            evidence.append(Evidence(sentence, support, 0.0, credit, named,
                                     len(names & near) >= names_required(names) * len(names),
                                     adds_words=bool(own - question_stems),
                                     similarity_weight=self.settings.similarity_weight))
        # Compare with the question by embedding those of the two best chunks (paraphrases share no words
        # with the question) and the best of the rest by word overlap.
        best_chunks = {hit.chunk_id for hit in hits[:2]}
        first = [e for e in evidence if e.sentence.hit.chunk_id in best_chunks]
        rest = sorted((e for e in evidence if e.sentence.hit.chunk_id not in best_chunks), key=lambda e: -e.support)
        evidence = (first + rest)[: max(self.settings.embedded_sentences, len(first))]
        vectors = self.retriever.embed_texts([query.text] + [e.sentence.text for e in evidence])
        for item, similarity in zip(evidence, vectors[1:] @ vectors[0]):
            item.similarity = float(similarity)
        # Synonyms are looked for only in the likeliest sentences.
        evidence.sort(key=lambda e: -e.score)
        for item in evidence[: self.settings.synonym_sentences]:
            item.support, item.credit = self._support(terms, item.sentence.text, initialisms, synonyms=True)
        evidence.sort(key=lambda e: -e.score)
        return evidence

    def _support(self, terms: list[Term], text: str, initialisms: frozenset[str],
                 synonyms: bool) -> tuple[float, dict[str, float]]:
        """IDF-weighted share of question terms found in `text`, literally or as a near synonym, and
        each term's credit."""
        total = sum(t.weight for t in terms)
        if not total:
            return 0.0, {}
        stems = self.language.content_stems(text) | self._spelled_out(text, initialisms)
        credit = {t.stem: 1.0 for t in terms if t.stem in stems}
        # Numbers match only literally: "8,102" is no synonym of "population".
        missing = [t for t in terms if t.stem not in stems and t.word.isalpha()]
        words = [w for w in dict.fromkeys(self.language.content_words(text)) if w.isalpha()] if synonyms else []
        if missing and words:
            vectors = self.retriever.embed_texts([t.word for t in missing] + words)
            best = (vectors[len(missing) :] @ vectors[: len(missing)].T).max(axis=0)
            floor, span = self.settings.synonym_floor, self.settings.synonym_ceiling - self.settings.synonym_floor
            for term, sim in zip(missing, best):
                credit[term.stem] = float(np.clip((sim - floor) / span, 0.0, 1.0))
        return sum(t.weight * credit.get(t.stem, 0.0) for t in terms) / total, credit

    def _stems(self, text: str, initialisms: frozenset[str]) -> frozenset[str]:
        """The stems of the words of `text`, and of the question's initialisms that `text` spells out."""
        return self.language.word_stems(text) | self._spelled_out(text, initialisms)

    def _spelled_out(self, text: str, initialisms: frozenset[str]) -> frozenset[str]:
        """Stems of the question's initialisms ("NYC") whose words `text` has ("New York City")."""
        if not initialisms:
            return frozenset()
        return frozenset(self.language.stem(sorted(initialisms & self.language.initials_spelled(text))))

    def supports(self, evidence: Evidence) -> bool:
        return (
            evidence.names_present
            and evidence.adds_words
            and evidence.support >= self.settings.min_support
            and evidence.similarity >= self.settings.min_similarity
        )

    def covers_focus(self, evidence: Evidence, focus: tuple[str, ...]) -> bool:
        """Whether the sentence speaks of what is asked ("population" in "What is the population of X?",
        "founded" in "When was X founded?"): literally or as a near synonym. No focus word, no constraint."""
        if not focus:
            return True
        stems = self.language.stem(list(focus))
        return max(evidence.credit.get(stem, 0.0) for stem in stems) >= self.settings.min_focus_credit

    def answer(self, asked: QuestionAnalysis, query: QuestionAnalysis, hits: list[Hit]) -> Answer:
        """The answer to `asked`, retrieved with `query` (its standalone form: the same for a question that
        stands on its own, the question plus the conversation's topic for a follow-up)."""
        evidence = self.rank_evidence(asked, query, hits)
        chosen = self._choose(evidence, asked, query)
        if chosen is None:
            return self._refuse(asked, query, evidence)
        if asked.open:
            return self._open_answer(query, evidence, chosen)
        quote = _fit_quote(chosen.sentence.text, chosen.short_answer, self.settings.max_answer_chars - 40)
        lead = f"{chosen.short_answer} — " if chosen.short_answer else ""
        return Answer(
            text=f'{lead}"{quote}" [1]',
            citations=[_citation(chosen, quote)],
            refused=False,
            query=query.text,
            short_answer=chosen.short_answer,
        )

    def _open_answer(self, query: QuestionAnalysis, evidence: list[Evidence], best: Evidence) -> Answer:
        """An explanation is rarely one sentence: the best sentence, then up to `open_answer_sentences` - 1 more
        supporting sentences scoring near it, in document order, each quoted with its own [n], within the
        answer length limit."""
        chosen = [best]
        budget = self.settings.max_answer_chars - len(best.sentence.text) - 8
        floor = best.score * self.settings.open_answer_ratio
        for item in evidence:
            if len(chosen) >= self.settings.open_answer_sentences:
                break
            if item is best or item.score < floor or not self.supports(item):
                continue
            if len(item.sentence.text) + 8 <= budget:
                chosen.append(item)
                budget -= len(item.sentence.text) + 8
        if len(chosen) == 1:
            quote = _fit_quote(best.sentence.text, None, self.settings.max_answer_chars - 10)
            return Answer(f'"{quote}" [1]', [_citation(best, quote)], refused=False, query=query.text)
        # The sentence that answers best comes first; the others follow in document order (putting all in
        # document order moved the answering sentence behind its context, and cited it first less often).
        chosen[1:] = sorted(chosen[1:], key=lambda e: (e.sentence.hit.chunk.source, e.sentence.hit.chunk.page or 0,
                                                       e.sentence.start))
        text = " ".join(f'"{e.sentence.text}" [{n}]' for n, e in enumerate(chosen, start=1))
        return Answer(text, [_citation(e) for e in chosen], refused=False, query=query.text)

    def _refuse(self, asked: QuestionAnalysis, query: QuestionAnalysis, evidence: list[Evidence]) -> Answer:
        """The refusal, with why: the question's words no passage mentions, or the kind of answer none gives."""
        reason = "none of them answers the question"
        if evidence:
            seen: set[str] = set()
            for item in evidence[:20]:
                seen |= self.language.content_stems(f"{item.sentence.previous} {item.sentence.text}")
            absent = [w for w, stem in zip(asked.words, asked.stems) if stem not in seen]
            if absent:
                reason = "no passage mentions " + ", ".join(f'"{w}"' for w in absent[:3])
            elif asked.answer_type:
                reason = f"none of them gives the {self.language.kind_words[asked.answer_type]} asked for"
        return Answer(
            text=f"{REFUSAL} The closest passages are listed below, but {reason}.",
            citations=[_citation(e) for e in evidence[: self.settings.max_citations]],
            refused=True,
            query=query.text,
        )

    def _choose(self, evidence: list[Evidence], asked: QuestionAnalysis, query: QuestionAnalysis) -> Evidence | None:
        """The best supporting sentence that holds the kind of answer asked for (any, for untyped questions).

        Only sentences about as supportive as the best one are searched for a typed answer: a date in a
        weaker sentence is usually the date of something else. What a follow-up's query inherited from the
        conversation ("OPPO" for "its product series") is what the question is about, so it is not an answer
        either, as the question's own words are not.
        """
        kind = asked.answer_type
        known = f"{asked.text} {query.text}"
        supporting = [e for e in evidence if self.supports(e)]
        if asked.period:  # a figure with no year attached is not the figure for the year asked about
            supporting = [e for e in supporting
                          if self.language.in_period(asked.period, f"{e.sentence.previous} {e.sentence.text}")]
        if not supporting:
            return None
        if kind is None:
            return supporting[0]
        # A number, date or name is read off one sentence, so that sentence (or the one before it, where
        # "it" is named) must be about the names the question uses, not only its chunk.
        supporting = [e for e in supporting if e.names_near]
        if not supporting:
            return None
        floor = max(e.support for e in supporting) - self.settings.typed_support_margin
        if kind == "name":  # "which ...": the best sentence answers, led by a name when it holds one
            best = supporting[0]
            best.short_answer = find_short_answer(self.language, asked, best.sentence.text, known)
            if best.short_answer or not self.language.candidates(kind, best.sentence.text, asked.text):
                return best
            # Its only names are the conversation's subject: a close sentence naming something else answers.
            for item in (e for e in supporting[1:] if e.support >= floor):
                item.short_answer = find_short_answer(self.language, asked, item.sentence.text, known)
                if item.short_answer:
                    return item
            return best
        counted = list(asked.counted) if kind == "number" else []
        close = [e for e in supporting if e.support >= floor and self.covers_focus(e, asked.focus)]
        for candidate_kind in self.language.candidate_passes[kind]:
            for item in close:
                found = self.language.candidates(candidate_kind, item.sentence.text, known)
                if counted:
                    found = [c for c in found
                             if self._counts(counted, self.language.counted_nearby(item.sentence.text, c))]
                item.short_answer = nearest_to_question(self.language, found, item.sentence.text, asked)
                if item.short_answer:
                    return item
        return None

    def _counts(self, counted: list[str], following: list[str]) -> bool:
        """Whether the words naming what a number counts (see English.counted_nearby) name what "how many
        ..." asks to count, literally or as a near synonym."""
        if not following:
            return False
        if set(self.language.stem(counted)) & set(self.language.stem(following)):
            return True
        vectors = self.retriever.embed_texts(counted + following)
        return float((vectors[: len(counted)] @ vectors[len(counted) :].T).max()) >= self.settings.counted_similarity


def names_required(names: set[str]) -> float:
    """Share of the question's names a passage must mention: all of one or two; half of more, since a
    question comparing many things is answered by passages naming some of them."""
    return 1.0 if len(names) <= 2 else 0.5


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


def find_short_answer(language: English, asked: QuestionAnalysis, sentence: str, known: str | None = None) -> str | None:
    """The candidate of the kind `asked` wants that lies nearest to the question's words in the sentence, not
    one `known` (default: the question) already contains."""
    assert asked.answer_type is not None
    for kind in language.candidate_passes[asked.answer_type]:
        found = language.candidates(kind, sentence, known or asked.text)
        if found:
            return nearest_to_question(language, found, sentence, asked)
    return None


def nearest_to_question(language: English, found: list[Candidate], sentence: str, asked: QuestionAnalysis) -> str | None:
    if not found:
        return None
    q_stems = set(asked.stems)
    positions = [m.start() for m in language.word.finditer(sentence) if language.stem([fold(m.group())])[0] in q_stems]

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

