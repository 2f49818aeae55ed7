"""Retrieval and extractive answers on tiny corpora and on the shipped article, with exact expectations."""

from __future__ import annotations

from pathlib import Path

from rag.answer import REFUSAL, find_short_answer
from rag.chat import Assistant
from rag.ingest import ingest
from rag.language import get_language
from rag.question import analyse
from rag.settings import Settings
from tests.conftest import TINY_CORPUS, write_corpus


def test_hybrid_search_ranks_the_right_chunk_first(tiny_index: Settings, embedder) -> None:
    assistant = Assistant(tiny_index, embedder)
    retriever = assistant._refresh()
    assert retriever.search("How many agreements were signed?")[0].chunk.chunk_id == "conference.txt#0"
    assert retriever.search("When do typhoons come?")[0].chunk.chunk_id == "weather.md#0"
    assert retriever.search("How long do cats sleep?")[0].chunk.chunk_id == "cats.html#0"


def test_answer_leads_with_the_number_and_quotes_the_sentence(tiny_index: Settings, embedder) -> None:
    answer = Assistant(tiny_index, embedder).ask("How many agreements were signed at the conference?")
    assert not answer.refused
    assert answer.short_answer == "33"
    assert answer.text == '33 — "The event resulted in 33 signed agreements worth 18.47 billion RMB." [1]'
    [citation] = answer.citations
    assert (citation.source, citation.page) == ("conference.txt", None)
    source_text = (tiny_index.corpus_dir / "conference.txt").read_text()
    assert source_text[citation.start : citation.end] == citation.text


def test_out_of_corpus_question_is_refused(tiny_index: Settings, embedder) -> None:
    answer = Assistant(tiny_index, embedder).ask("What is the population of Dongguan?")
    assert answer.refused
    assert answer.text.startswith(REFUSAL)
    assert answer.citations, "the closest passages are offered"


def test_empty_and_huge_questions_get_a_message(tiny_index: Settings, embedder) -> None:
    assistant = Assistant(tiny_index, embedder)
    assert assistant.ask("   ").text == "Please type a question."
    huge = assistant.ask("why " * 2500)
    assert huge.refused
    assert huge.text == ("The question is 9,999 characters long; the limit is 2,000 (setting "
                         "RAG_MAX_QUESTION_CHARS). Please shorten it.")


def test_shipped_article_answers_33_and_refuses_population(shipped_index: Settings, embedder) -> None:
    assistant = Assistant(shipped_index, embedder)
    answer = assistant.ask("How many agreements were signed at the conference?")
    assert answer.short_answer == "33"
    assert answer.citations[0].source == "dongguan-hong-kong-cooperation.txt"
    assert "resulting in 33 signed agreements" in answer.citations[0].text
    assert assistant.ask("What is the population of Dongguan?").refused


EN = get_language("en")


def short_answer(sentence: str, question: str) -> str | None:
    return find_short_answer(EN, analyse(question, EN), sentence)


def test_answer_types_and_short_answers() -> None:
    assert EN.answer_type("How many agreements were signed?") == "number"
    assert EN.answer_type("When was the park launched?") == "date"
    assert EN.answer_type("How long does it take?") == "duration"
    assert EN.answer_type("Who developed the coating?") == "person"
    assert EN.answer_type("Which university did OPPO partner with?") == "name"
    assert EN.answer_type("What is the population of Dongguan?") == "number"
    assert EN.answer_type("What model did they follow?") is None
    sentence = "The park, launched in April 2023, cut the time from factory to cabin to just 15 hours."
    assert short_answer(sentence, "When was the park launched?") == "April 2023"
    assert short_answer(sentence, "How long from factory to cabin?") == "15 hours"
    # Decimals and thousands separators stay whole; a number inside a date is not a count.
    assert short_answer("On March 17 it had 3.28 million and 8,102 firms.", "How many firms?") == "8,102"


def test_what_a_question_asks_about() -> None:
    assert EN.counted_words("How many Hong Kong-invested enterprises has Dongguan attracted?") == [
        "hong", "kong", "invested", "enterprises"]
    assert EN.counted_words("How many agreements were signed?") == ["agreements"]
    assert EN.focus_words("What is the population of Dongguan?") == ["population"]
    assert EN.focus_words("Who organised the conference?") == ["organised"]
    assert EN.focus_words("What is the size of the fund?") == []  # too generic to demand
    assert EN.names_in("When was the Hong Kong Productivity Council founded?") == ["hong", "kong", "productivity", "council"]
    assert EN.names_in("What is the GDP of Hong Kong?") == ["gdp", "hong", "kong"]
    assert EN.period_asked("What was the value of trade last year?") == "year"
    assert EN.period_asked("How much did exports grow in 2019?") == "2019"
    assert EN.period_asked("In what year was the fund set up?") is None  # asks for a year, is not limited to one
    assert EN.period_asked("How much has been invested over the years?") is None


def test_a_question_limited_to_a_year_needs_a_figure_for_a_year(tmp_path: Path, embedder) -> None:
    corpus = write_corpus(tmp_path / "corpus", {
        "trade.txt": "On March 3 the Avalon harbour fair signed deals worth 1.1 billion dollars. "
                     "Trade between Avalon and Brightwater reached 5.2 billion dollars in 2023.",
    })
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    ingest(settings, embedder=embedder)
    assistant = Assistant(settings, embedder)
    question = "What was the value of trade between Avalon and Brightwater {}?"
    assert assistant.ask(question.format("in 2023")).short_answer == "5.2 billion dollars"
    assert assistant.ask(question.format("last year")).short_answer == "5.2 billion dollars"
    assert assistant.ask(question.format("in 2021")).refused
    assert assistant.ask("What was the value of the deals signed at the Avalon harbour fair?").short_answer == (
        "1.1 billion dollars")


def test_refusals_on_the_shipped_article(shipped_index: Settings, embedder) -> None:
    """Near misses: each retrieves a confident passage that does not say what is asked."""
    assistant = Assistant(shipped_index, embedder)
    for question in (
        "What is the GDP of Hong Kong?",  # a name the passages never mention
        "When was the Hong Kong Productivity Council founded?",  # the 1978 date belongs to something else
        "How many students are enrolled at the City University of Hong Kong (Dongguan)?",  # no count of students
        "Who organised the Dongguan-Hong Kong Industrial Cooperation Exchange Conference?",  # nobody organises
        "What is the capital of France?",
        "What was the value of trade between Dongguan and Hong Kong last year?",  # 18.47 billion was one event's
    ):
        answer = assistant.ask(question)
        assert answer.refused, (question, answer.text)


def test_paraphrases_and_counted_nouns_on_the_shipped_article(shipped_index: Settings, embedder) -> None:
    assistant = Assistant(shipped_index, embedder)
    assert assistant.ask("How many deals were inked at the event?").short_answer == "33"
    assert assistant.ask("Around how many representatives attended the conference?").short_answer == "300"
    assert assistant.ask("How long does it take goods to go from a factory to a plane?").short_answer == "15 hours"
    assert assistant.ask("When was the Airport Logistics Park launched?").short_answer == "April 2023"


FERRY = {
    "ferry.txt": (
        "The Avalon ferry service stopped in 2019 because winter storms destroyed the ferry pier. "
        "Tourism on the island grew after the new bridge opened. "
        "The ferry service had also stopped running at night after its operator lost its safety licence."
    ),
}


def test_an_open_question_is_answered_with_its_supporting_sentences_best_first(tmp_path: Path, embedder) -> None:
    settings = Settings(corpus_dir=write_corpus(tmp_path / "corpus", FERRY), index_dir=tmp_path / "index")
    ingest(settings, embedder=embedder)
    answer = Assistant(settings, embedder).ask("Why did the Avalon ferry service stop?")
    first, third = FERRY["ferry.txt"].split(". ")[0] + ".", FERRY["ferry.txt"].split(". ")[2]
    assert answer.text == f'"{first}" [1] "{third}" [2]'
    assert [(c.source, c.text) for c in answer.citations] == [("ferry.txt", first), ("ferry.txt", third)]
    assert answer.short_answer is None
    # A factual question keeps the short answer first and one quote.
    assert Assistant(settings, embedder).ask("When did the Avalon ferry service stop?").short_answer == "2019"


def test_a_refusal_says_which_words_no_passage_mentions(tmp_path: Path, embedder) -> None:
    settings = Settings(corpus_dir=write_corpus(tmp_path / "corpus", FERRY), index_dir=tmp_path / "index")
    ingest(settings, embedder=embedder)
    answer = Assistant(settings, embedder).ask("What is the population of Avalon?")
    assert answer.refused
    assert answer.text == (f'{REFUSAL} The closest passages are listed below, but no passage mentions "population".')


def assistant_beside_tiny_corpus(tmp_path: Path, embedder, name: str, text: str) -> Assistant:
    """An assistant on one document beside the tiny corpus's (a name in every chunk would be the corpus's
    subject, exempt from the names a passage must mention)."""
    settings = Settings(corpus_dir=write_corpus(tmp_path / "corpus", {**TINY_CORPUS, name: text}),
                        index_dir=tmp_path / "index")
    ingest(settings, embedder=embedder)
    return Assistant(settings, embedder)


def test_a_typed_answer_comes_from_a_sentence_about_the_names_asked(tmp_path: Path, embedder) -> None:
    """The chunk names Brightwater, but the date sentence is about another town's harbour."""
    assistant = assistant_beside_tiny_corpus(tmp_path, embedder, "towns.txt", (
        "Avalon is a fishing town on the north coast. Its harbour opened in 1950 after years of work. "
        "Brightwater, across the bay, is known for its ferry and its summer market."))
    assert assistant.ask("When did the harbour of Avalon open?").short_answer == "1950"
    refused = assistant.ask("When did the harbour of Brightwater open?")
    assert refused.refused and refused.text.endswith("but none of them gives the date asked for.")


def test_names_match_without_accents_and_initialisms_match_the_words_they_stand_for(tmp_path: Path, embedder) -> None:
    """People type "Zoe" for "Zoë" and "IMF" for "International Monetary Fund": both are the names the
    passage uses, so the question is answered, from the right sentence, and not refused as being about
    something no passage mentions."""
    assistant = assistant_beside_tiny_corpus(tmp_path, embedder, "people.txt", (
        "Zoë Marchetti founded the Lakeside Choir in 1987. She still conducts it every Sunday. "
        "The International Monetary Fund opened its first regional office in 1947, in Paris."))
    choir = assistant.ask("When did Zoe Marchetti found the Lakeside Choir?")
    assert (choir.short_answer, choir.citations[0].text) == (
        "1987", "Zoë Marchetti founded the Lakeside Choir in 1987.")
    office = assistant.ask("When did the IMF open its first regional office?")
    assert (office.short_answer, office.citations[0].text) == (
        "1947", "The International Monetary Fund opened its first regional office in 1947, in Paris.")
    assert assistant.ask("When did the WTO open its first regional office?").refused  # no passage spells out WTO


def test_a_document_names_its_subject_in_its_file_name_and_a_heading_answers_nothing(
        tmp_path: Path, embedder) -> None:
    """A biography says "Marchetti" throughout; a question says "Zoë": the file name joins the two. Its title
    line repeats the question's own words and is never the answer."""
    assistant = assistant_beside_tiny_corpus(tmp_path, embedder, "Zoë_Marchetti.txt", (
        "Zoë Marchetti\n\nMarchetti was born in Genoa in 1931. Marchetti moved to Turin in 1950 and opened "
        "a bakery on the Via Roma. Her bakery closed in 1988."))
    closed = assistant.ask("In what year did Zoë's bakery close?")  # neither it nor the sentence before says Zoë
    assert (closed.short_answer, closed.citations[0].text) == ("1988", "Her bakery closed in 1988.")
    moved = assistant.ask("Where did Zoë Marchetti open a bakery?")
    assert not moved.refused and moved.citations[0].text == (
        "Marchetti moved to Turin in 1950 and opened a bakery on the Via Roma.")
    assert assistant.ask("In what year was Tullio born?").refused  # a name neither the text nor the file name has


def test_a_one_digit_figure_is_what_a_sentence_adds_to_the_question(tmp_path: Path, embedder) -> None:
    assistant = assistant_beside_tiny_corpus(tmp_path, embedder, "status.txt", (
        "Status report. The current shipment number is 5. It left the harbour on schedule."))
    answer = assistant.ask("What is the current shipment number?")
    assert not answer.refused and answer.text == '"The current shipment number is 5." [1]'
