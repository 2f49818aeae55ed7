"""Output: the console table, and a Markdown report with a PNG chart of ours vs the baseline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.evaluation.metrics import METRICS, format_value
from rag.evaluation.systems import BASELINE_CHUNK_TOKENS, BASELINE_TOP_K

if TYPE_CHECKING:
    from rag.evaluation.runner import EvalResult



def _table_rows(results: dict[str, EvalResult]) -> tuple[list[str], list[list[str]]]:
    """(metric keys shown, one row of cells per set and per set's baseline): the metrics that apply to
    at least one of the sets, in registry order."""
    shown = [m for m in METRICS if any(r.metrics[m] is not None or (r.baseline_metrics or {}).get(m) is not None
                                       for r in results.values())]
    rows = []
    for name, result in results.items():
        size = f"{result.eval_set.kind}, {len(result.rows)}"
        rows.append([name, size, *(format_value(m, result.metrics[m]) for m in shown), f"{result.seconds:.0f}"])
        if result.baseline_metrics:
            rows.append([f"{name} (baseline)", "", *(format_value(m, result.baseline_metrics[m]) for m in shown), ""])
    return shown, rows


def sets_table(results: dict[str, EvalResult]):
    """The console table: one row per eval set (and one for its LlamaIndex baseline), a column per metric
    that applies to any of them, "—" where one does not."""
    from rich.table import Table

    shown, rows = _table_rows(results)
    table = Table(title="rag eval: ours and the plain LlamaIndex baseline, per eval set")
    table.add_column("set")
    table.add_column("kind, questions")
    for key in shown:
        table.add_column(key.replace("_", " "), justify="right")
    table.add_column("s", justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def sets_markdown(results: dict[str, EvalResult]) -> str:
    """The same table in Markdown (summary.md of a multi-set report, the README)."""
    shown, rows = _table_rows(results)
    lines = ["| set | kind, questions | " + " | ".join(shown) + " | s |",
             "|---|---|" + "---:|" * (len(shown) + 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(text: str, limit: int = 300) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_report(result: EvalResult, folder: Path | str) -> Path:
    """report.md (metrics ours vs baseline, the chart, every failure) and metrics.png in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chart = write_chart(result, folder / "metrics.png")
    names = [n for n in METRICS if result.metrics[n] is not None or (result.baseline_metrics or {}).get(n) is not None]
    lines = [
        f"# Eval report: {result.eval_set.path.name}",
        "",
        f"{len(result.rows)} {'turns' if result.eval_set.kind == 'conversations' else 'questions'} "
        f"({result.eval_set.kind} file `{result.eval_set.path}`), corpus `{result.corpus_dir}`, "
        f"{result.seconds:.1f} s. Baseline: plain LlamaIndex VectorStoreIndex, chunk {BASELINE_CHUNK_TOKENS}, "
        f"top-k {BASELINE_TOP_K}, same embedder, answer = retrieved text. Metric definitions: README.md, Evaluation.",
        "",
        "| metric | ours | baseline |",
        "|---|---:|---:|",
    ]
    for name in names:
        base = result.baseline_metrics[name] if result.baseline_metrics else None
        lines.append(f"| {name} | {format_value(name, result.metrics[name])} | {format_value(name, base)} |")
    lines += ["", f"![metrics]({chart.name})", "", f"## Failures ({len(result.failures)})", ""]
    if result.failures:
        lines += ["| id | question | expected | got |", "|---|---|---|---|"]
        for row in result.failures:
            got = ("(refused) " if row.answer.refused else "") + row.answer.text
            lines.append(f"| {row.case.id} | {_cell(row.case.question)} | {_cell(row.case.expected)} | {_cell(got)} |")
    else:
        lines.append("None.")
    if result.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in result.warnings]
    path = folder / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_chart(result: EvalResult, path: Path) -> Path:
    """Grouped bars, ours vs baseline: the 0-1 metrics on one axis, latency (ms) on a second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = result.baseline_metrics or {}
    rates = [n for n in METRICS if not n.endswith("_ms") and result.metrics[n] is not None]
    times = [n for n in METRICS if n.endswith("_ms") and result.metrics[n] is not None]
    fig, (ax, ax_time) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [max(len(rates), 1), 1.6]})
    width = 0.4
    for axis, names, unit in ((ax, rates, "score"), (ax_time, times, "ms")):
        x = np.arange(len(names))
        ours_values = [result.metrics[n] or 0.0 for n in names]
        base_values = [base.get(n) or 0.0 for n in names]
        bars = axis.bar(x - width / 2, ours_values, width, label="ours", color="#2b6cb0")
        axis.bar_label(bars, labels=[format_value(n, v) for n, v in zip(names, ours_values)], fontsize=7, padding=2)
        if base:
            bars = axis.bar(x + width / 2, base_values, width, label="baseline", color="#a0aec0")
            axis.bar_label(bars, labels=[format_value(n, base.get(n)) for n in names], fontsize=7, padding=2)
        axis.set_xticks(x, [n.replace("_ms", "") for n in names], rotation=35, ha="right", fontsize=8)
        axis.set_ylabel(unit)
    ax.set_ylim(0, 1.25)
    ax.set_title(f"{result.eval_set.path.name}: ours vs LlamaIndex baseline", fontsize=10)
    ax_time.set_title("latency per question", fontsize=10)
    ax_time.set_ylim(0, max([result.metrics[n] or 0 for n in times] + [base.get(n) or 0 for n in times] + [1]) * 1.2)
    ax.legend(loc="upper left", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
