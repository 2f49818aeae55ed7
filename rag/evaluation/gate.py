"""The CI gate: thresholds per table of a TOML file, checked against an eval's metrics."""

from __future__ import annotations

import math
from pathlib import Path

from rag.evaluation.datasets import EvalError, FileKind
from rag.evaluation.metrics import LOWER_IS_BETTER, METRICS, format_value

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]



def load_thresholds(path: Path | str, kind: FileKind) -> dict[str, float]:
    """The [kind] table of a thresholds TOML file: metric = minimum (maximum for LOWER_IS_BETTER)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"thresholds file {path} does not exist: fix the --gate path") from None
    except tomllib.TOMLDecodeError as err:
        raise EvalError(f"thresholds file {path}: not valid TOML ({err})") from None
    unknown_sections = set(data) - {"questions", "conversations", "labelled"}
    if unknown_sections:
        raise EvalError(f"thresholds file {path}: unknown section(s) {sorted(unknown_sections)}; use [questions], [conversations], [labelled]")
    table = data.get(kind)
    if table is None:
        raise EvalError(f"thresholds file {path} has no [{kind}] section for this {kind} file: add one")
    thresholds = {}
    for name, value in table.items():
        if name not in METRICS:
            raise EvalError(f"thresholds file {path} [{kind}]: unknown metric {name!r}; known: {', '.join(METRICS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise EvalError(f"thresholds file {path} [{kind}] {name}: must be a number, got {value!r}")
        thresholds[name] = float(value)
    return thresholds


def check_gate(metrics: dict[str, float | None], thresholds: dict[str, float]) -> tuple[list[str], list[str]]:
    """(failures, notes): a failure names the metric, its value and its threshold."""
    failures, notes = [], []
    for name, limit in thresholds.items():
        value = metrics.get(name)
        if value is None:
            notes.append(f"{name} does not apply to this file: not gated")
        elif name in LOWER_IS_BETTER and value > limit:
            failures.append(f"{name} = {format_value(name, value)} is above its threshold {format_value(name, limit)}")
        elif name not in LOWER_IS_BETTER and value < limit:
            failures.append(f"{name} = {format_value(name, value)} is below its threshold {format_value(name, limit)}")
    return failures, notes
