"""The CI gate: thresholds per table of a TOML file, checked against an eval's metrics."""

from __future__ import annotations

import math
from pathlib import Path

from rag.evaluation.datasets import FILE_KINDS, EvalError
from rag.evaluation.metrics import LOWER_IS_BETTER, METRICS, format_value

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]



def load_thresholds(path: Path | str, table: str) -> dict[str, float]:
    """The [table] of a thresholds TOML file: metric = minimum (maximum for LOWER_IS_BETTER). A file is
    gated by the table of its kind ([questions], [conversations], [labelled]); a set of a manifest by
    the table its `gate` names."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalError(f"thresholds file {path} does not exist: fix the --gate path") from None
    except tomllib.TOMLDecodeError as err:
        raise EvalError(f"thresholds file {path}: not valid TOML ({err})") from None
    values = data.get(table)
    if not isinstance(values, dict):
        what = f"this {table} file" if table in FILE_KINDS else f"the eval set gated by [{table}]"
        has = ", ".join(f"[{name}]" for name in data) or "no tables"
        raise EvalError(f"thresholds file {path} has no [{table}] section for {what}: add one (it has {has})")
    thresholds = {}
    for name, value in values.items():
        if name not in METRICS:
            raise EvalError(f"thresholds file {path} [{table}]: unknown metric {name!r}; known: {', '.join(METRICS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise EvalError(f"thresholds file {path} [{table}] {name}: must be a number, got {value!r}")
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
