"""`rag bench --scale`: a real index version written by the store at two sizes either side of ann_min_vectors
(lowered through its environment variable), loaded and queried in a fresh process. Only the table's shape
and the facts that do not depend on speed are asserted: speed is measured by the command, not here."""

from __future__ import annotations

import pytest

from rag import cli


@pytest.mark.slow
def test_bench_scale_prints_both_kinds_with_exact_recall_below_the_threshold(monkeypatch, capsys) -> None:
    monkeypatch.setenv("RAG_ANN_MIN_VECTORS", "1000")
    assert cli.main(["bench", "--scale", "800", "2000", "--embed", "64", "--requests", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("`rag bench --scale 800 2000 --embed 64 --requests 5` (")
    assert "vectors beyond the real embedded ones are synthesised around them" in out
    rows = {line.split(" | ")[0].lstrip("| "): line.strip("| ").split(" | ")[1:] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| measure")}
    assert rows["chunks (real embedded vectors)"] == ["800 (64)", "2,000 (64)"]
    assert rows["dense index"] == ["exact", "ivf"]
    assert rows["dense recall@10 against exact search"][0] == "1.000"
    assert 0.5 <= float(rows["dense recall@10 against exact search"][1]) <= 1.0
    assert len(rows) == 16
    # A one-file change (100 chunks) writes a segment of its own and a manifest, not the whole index again.
    shares = [float(cell.split("(")[1].rstrip("%)")) for cell in rows["one-file change: bytes written (MB, share of the index)"]]
    assert all(0 < share < 20 for share in shares), shares
