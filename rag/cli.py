"""`rag ingest | ask | chat | serve | watch | eval | bench`: the terminal front end. Thin: it calls the library's public API."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from rag.settings import Settings

console = Console(stderr=True, soft_wrap=True)
stdout = Console(soft_wrap=True, highlight=False)  # answers; styled only when stdout is a terminal


def say(text: str, label: str = "") -> None:
    """One line on stderr through rich: a markup `label` ("[red]error:[/]"), then `text` (file names, reasons,
    paths) without control sequences (rag.render.printable) and markup-escaped, so a file named
    "[red]x.txt" or "\033]0;title\007.txt" is printed as text."""
    from rag.render import printable

    shown = escape(printable(text))
    console.print(f"{label} {shown}" if label else shown, highlight=False)


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "corpus", None):
        overrides["corpus_dir"] = Path(args.corpus)
    if getattr(args, "index", None):
        overrides["index_dir"] = Path(args.index)
    if getattr(args, "llm", None):
        overrides["llm_backend"] = args.llm
    return Settings(**overrides)


def cmd_ingest(args: argparse.Namespace) -> int:
    from rag.embedding import EmbedderError
    from rag.ingest import IngestError, check, ingest

    settings = _settings(args)
    if args.check:
        drift = check(settings)
        for line in drift:
            say(line, "[yellow]drift[/]")
        if not drift:
            say(f"index {settings.index_dir} matches {settings.corpus_dir}")
        return 1 if drift else 0
    try:
        report = ingest(settings, rebuild=args.rebuild)
    except (IngestError, EmbedderError) as err:  # EmbedderError: the model, or Ray for RAG_EMBED_BACKEND=ray
        say(str(err), "[red]error:[/]")
        return 1
    for skipped in report.skipped:
        say(f"{skipped.path}: {skipped.reason}", "[yellow]skipped[/]")
    if report.rebuilt:
        say(f"rebuilt from scratch: {report.rebuilt}")
    print(report.summary())
    return 0


def _print_answer(answer, as_json: bool, question: str | None = None) -> None:
    if as_json:
        print(json.dumps(answer.to_json(), ensure_ascii=False, indent=1))
        return
    from rag.render import answer_text

    stdout.print(answer_text(answer, question))


def _stream_answer(assistant, question: str, history: list | None = None):
    """Print the model's words as they arrive, then the checked answer; returns the Answer."""
    from rag.render import printable
    from rag.schema import Answer

    streamed = False
    answer = None
    for item in assistant.stream(question, history):
        if isinstance(item, Answer):
            answer = item
        else:
            sys.stdout.write(printable(item))
            sys.stdout.flush()
            streamed = True
    if streamed:
        print("\n--- checked against the passages ---")
    _print_answer(answer, as_json=False, question=question)
    return answer


def _open_assistant(settings: Settings):
    from rag.chat import Assistant
    from rag.store import IndexProblem

    try:
        return Assistant(settings)
    except IndexProblem as err:
        say(str(err), "[red]error:[/]")
        return None


def cmd_ask(args: argparse.Namespace) -> int:
    assistant = _open_assistant(_settings(args))
    if assistant is None:
        return 1
    if args.json:
        _print_answer(assistant.ask(args.question), as_json=True)
    else:
        _stream_answer(assistant, args.question)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    assistant = _open_assistant(_settings(args))
    if assistant is None:
        return 1
    from rag.chat import conversation_markdown, record_turn

    history: list = []  # of rag.schema.Turn
    console.print("Ask a question; /quit, /exit, an empty line or Ctrl-D quits, /new starts a new conversation, "
                  "/export FILE saves it as Markdown.")
    while True:
        try:
            question = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not question or question in ("/quit", "/exit"):
            return 0
        if question == "/new":
            history.clear()
            console.print("new conversation")
            continue
        if question.startswith("/export"):
            target = Path(question.removeprefix("/export").strip() or "chat.md")
            target.write_text(conversation_markdown(history), encoding="utf-8")
            console.print(f"saved {len(history)} exchanges to {target}", markup=False, highlight=False)
            continue
        if question.startswith("/"):
            console.print(f"unknown command {question.split()[0]!r}: use /new, /export FILE, /quit or /exit",
                          markup=False, highlight=False)
            continue
        answer = _stream_answer(assistant, question, history)
        history = record_turn(history, question, answer)


def cmd_serve(args: argparse.Namespace) -> int:
    from rag.web import serve

    settings = _settings(args)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    return serve(settings.model_copy(update=overrides))


def cmd_watch(args: argparse.Namespace) -> int:
    from rag.watch import follow

    settings = _settings(args)
    if args.debounce is not None:
        settings = Settings(**{**settings.model_dump(), "watch_debounce_s": args.debounce})  # validated
    return follow(settings)


def cmd_eval(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from rag import evaluation
    from rag.evaluation import fitting

    settings = _settings(args)  # --corpus and --index are passed on to run_set as well: it decides which is used
    # A wide table (a column per metric) must not be squeezed to 80 columns when stdout is a file or a pipe.
    out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 250)
    one_file = len(args.file) == 1 and not args.set and Path(args.file[0]).is_file() and Path(args.file[0]).suffix != ".toml"
    results: dict = {}
    cache = Path(args.cache) if args.cache else None
    try:
        specs = evaluation.resolve_sets(args.file, args.set or ())
        if args.leave_one_out and fitting.corpus_count(specs) < 2:
            raise evaluation.EvalError("--leave-one-out needs sets on at least two corpora (e.g. eval/sets.toml): "
                                       "fitting leaves one corpus out and scores it")
        thresholds = {}  # per set name; a set whose manifest entry names no gate table is not gated
        if args.gate:
            thresholds = {s.name: evaluation.load_thresholds(args.gate, s.gate) for s in specs if s.gate}
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("loading", total=None)
            for spec in specs:
                results[spec.name] = evaluation.run_set(
                    spec, settings, corpus=Path(args.corpus) if args.corpus else None,
                    index=Path(args.index) if args.index else None, baseline=not args.no_baseline,
                    cache_dir=cache,
                    progress=lambda stage, done, total: bar.update(task, description=stage, completed=done, total=total),
                )
        fits = []
        if args.leave_one_out:
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("fitting", total=None)
                told = lambda stage, done, total: bar.update(task, description=f"fitting: {stage}", completed=done, total=total)  # noqa: E731
                fits = [fitting.fit_thresholds(specs, settings, cache_dir=cache, progress=told),
                        fitting.fit_sentence_weight(specs, settings, cache_dir=cache, progress=told)]
    except evaluation.EvalError as err:
        console.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        return 1
    for name, result in results.items():
        for warning in result.warnings:
            console.print(f"[yellow]warning:[/] {escape(f'{name}: {warning}' if not one_file else warning)}", highlight=False)
    if args.json:  # one file: its object as ever; several sets: an object per set name
        data = next(iter(results.values())).to_json() if one_file else {n: r.to_json() for n, r in results.items()}
        if fits:  # several sets (checked above): beside them
            data["leave_one_out"] = {" / ".join(fit.parameters): fitting.fit_to_json(fit) for fit in fits}
        print(json.dumps(data, ensure_ascii=False, indent=1))
    else:
        out.print(evaluation.sets_table(results))
        if fits:
            header, rows = fitting.leave_one_out_table(fits)
            table = Table(*header, title="each corpus left out of fitting: what it scores at the values fitted "
                          "on the others (rag/evaluation/fitting.py)")
            for row in rows:
                table.add_row(*row)
            out.print(table)
        for name, result in results.items():
            if one_file:  # several sets: the failures are in each set's report (--report), not on the screen
                for row in result.failures:
                    out.print(f"failed {row.case.id}: {row.case.question}  expected {row.case.expected!r}, "
                              f"got {row.answer.text[:160]!r}", highlight=False, markup=False)
    if args.report:
        for name, result in results.items():
            folder = Path(args.report) if one_file else Path(args.report) / name
            console.print(f"report: {evaluation.write_report(result, folder)}", markup=False)
        if not one_file:
            summary = Path(args.report) / "summary.md"
            summary.write_text(evaluation.sets_markdown(results), encoding="utf-8")
            console.print(f"report: {summary}", markup=False)
    for name, result in results.items():
        console.print(f"evaluated {len(result.rows)} questions of {result.eval_set.path} in {result.seconds:.1f} s", markup=False)
    failed = False
    for spec in specs:
        if spec.name not in thresholds:
            if args.gate:
                console.print(f"gate: set {spec.name} names no thresholds table: not gated", markup=False)
            continue
        failures, notes = evaluation.check_gate(results[spec.name].metrics, thresholds[spec.name])
        where = f"{args.gate} [{spec.gate}]"
        for note in notes:
            console.print(f"gate: {note}" + ("" if one_file else f" ({spec.name})"), highlight=False, markup=False)
        for failure in failures:
            console.print(f"[red]gate failed:[/] {escape(f'{failure} ({where})')}", highlight=False)
        failed = failed or bool(failures)
        if not failures:
            console.print(f"gate passed: {len(thresholds[spec.name])} thresholds of {where}", markup=False)
    return 1 if failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rag import bench
    from rag.evaluation import EvalError, load_eval_file

    if args.scale is not None and args.backends:
        from rag import bench_backends

        for n in args.scale or [10_000]:
            results = bench_backends.run_scale(n, _settings(args), embed=args.embed, requests=min(args.requests, 100))
            print(f"`rag bench --backends --scale {n} --embed {args.embed} --requests {args.requests}` "
                  f"({os.cpu_count()} cores; Milvus Lite file vs the local store, same run; chunks are real text, "
                  "vectors beyond the real embedded ones synthesised)\n")
            print(bench_backends.table(results) + "\n")
        return 0
    if args.scale is not None:
        from rag import bench_scale

        sizes = args.scale or list(bench_scale.DEFAULT_SIZES)
        results = [bench_scale.run_scale(n, _settings(args), embed=args.embed, queries=args.requests) for n in sizes]
        command = " ".join(["rag bench --scale", *map(str, args.scale), f"--embed {args.embed} --requests {args.requests}"])
        print(f"`{command}` "
              f"({os.cpu_count()} cores; chunks are real text of eval/datasets; vectors beyond the real embedded "
              "ones are synthesised around them, sentence vectors around their chunk's; word vectors are random)\n")
        print(bench_scale.table(results))
        return 0

    corpus = Path(args.corpus or _settings(args).corpus_dir)
    try:
        questions = [case.question for case in load_eval_file(args.questions).cases]
    except EvalError as err:
        console.print(f"[red]error:[/] {err}", markup=False)
        return 1
    if not questions:
        console.print(f"error: {args.questions} has no questions", markup=False)
        return 1
    if args.backends:
        from rag import bench_backends

        results = bench_backends.run_backends(corpus, questions, requests=args.requests, base=_settings(args))
        print(f"`rag bench --backends --corpus {corpus} --questions {args.questions} --requests {args.requests}` "
              f"({os.cpu_count()} cores; Milvus Lite file vs the local store, same run)\n")
        print(bench_backends.table(results))
        return 0
    parts = [part.strip() for value in (args.only or [",".join(bench.PARTS)]) for part in value.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(bench.PARTS))
    if unknown:
        console.print(f"error: --only {','.join(unknown)}: no such part; choose from {', '.join(bench.PARTS)}", markup=False)
        return 1
    figures = bench.run_bench(corpus, questions, requests=args.requests, clients=args.clients, parts=parts)
    only = f" --only {','.join(parts)}" if args.only else ""
    print(f"`rag bench --corpus {corpus} --questions {args.questions} --requests {args.requests}{only}` "
          f"({os.cpu_count()} cores)\n")
    print(bench.table(figures))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_paths(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--corpus", help="folder of documents (default: corpus/, or RAG_CORPUS_DIR)")
        p.add_argument("--index", help="index folder (default: index/, or RAG_INDEX_DIR)")
        return p

    p = with_paths(sub.add_parser("ingest", help="build or update the index from the corpus"))
    p.add_argument("--rebuild", action="store_true", help="re-embed everything (repairs a damaged index)")
    p.add_argument("--check", action="store_true", help="report drift without changing anything; exit 1 on drift")
    p.set_defaults(func=cmd_ingest)

    def with_llm(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--llm", choices=["none", "openai", "llamacpp"],
                       help="who writes answers (default: extractive, or RAG_LLM_BACKEND)")
        return p

    p = with_llm(with_paths(sub.add_parser("ask", help="answer one question")))
    p.add_argument("question")
    p.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    p.set_defaults(func=cmd_ask)

    p = with_llm(with_paths(sub.add_parser("chat", help="a conversation in the terminal")))
    p.set_defaults(func=cmd_chat)

    p = with_llm(with_paths(sub.add_parser("serve", help="the web chat (same as app.py)")))
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.set_defaults(func=cmd_serve)

    p = with_paths(sub.add_parser("watch", help="follow the corpus folder and re-index after each change"))
    p.add_argument("--debounce", type=float, metavar="SECONDS",
                   help="quiet time after the last change before re-indexing (default 1, or RAG_WATCH_DEBOUNCE_S)")
    p.set_defaults(func=cmd_watch)

    p = with_llm(with_paths(sub.add_parser("eval", help="score answers and retrieval on a question set, beside a LlamaIndex baseline")))
    p.add_argument("file", nargs="+", help="eval files (questions .jsonl, conversations .jsonl, a LlamaIndex "
                   "rag_dataset.json), sets manifests (.toml, e.g. eval/sets.toml), or folders of eval sets")
    p.add_argument("--set", action="append", metavar="NAME",
                   help="run only this set of a manifest or folder (repeatable; also runs sets marked default = false)")
    p.add_argument("--json", action="store_true", help="print only one JSON object (metrics, questions, baseline)")
    p.add_argument("--report", metavar="DIR", help="write report.md and metrics.png to DIR (one folder per set, and summary.md, for several sets)")
    p.add_argument("--gate", metavar="TOML", help="thresholds file (e.g. eval/thresholds.toml); exit 1 when a metric misses")
    p.add_argument("--no-baseline", action="store_true", help="skip the LlamaIndex baseline (faster)")
    p.add_argument("--cache", metavar="DIR", help="where indexes built for --corpus are kept (default ~/.cache/rag-eval)")
    p.add_argument("--leave-one-out", action="store_true",
                   help="then fit the refusal thresholds and the best-sentence weight on the sets, each corpus left out "
                   "in turn, and print what each left-out corpus scores (answers every set 21 more times: 10-16 minutes on the default sets)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="measure ingest, query latency and throughput, cold start and memory beside LlamaIndex")
    p.add_argument("--corpus", help="documents to index in a temporary folder (default: corpus/, or RAG_CORPUS_DIR)")
    p.add_argument("--questions", default="eval/questions.jsonl", help="an eval file whose questions are asked")
    p.add_argument("--requests", type=int, default=200, help="questions asked per concurrent measurement (default 200)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--only", action="append", metavar="PARTS",
                   help="measure only these parts, comma-separated or repeated: ingest, cold, query (in-process "
                   "latency), serve (clients on `rag serve` beside as many threads in-process); default: all")
    p.add_argument("--scale", type=int, nargs="*", metavar="N",
                   help="instead: the store at N chunks (default 10000 100000): size, build, load, RSS, query "
                   "p50/p95, recall@10 against exact search (rag/bench_scale.py)")
    p.add_argument("--backends", action="store_true",
                   help="instead: the local store beside Milvus Lite (store_backend=milvus) on --corpus: ingest "
                   "(first, one file changed, nothing changed), opening, ask p50/p95 (rag/bench_backends.py)")
    p.add_argument("--embed", type=int, default=4096,
                   help="with --scale: most real embedded vectors (cached); the rest are synthesised (default 4096)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
