"""Numbers in prose come from committed result files: every generated block of README.md and docs/bb.md equals
what scripts/study_tables.py renders from docs/results, and every result file is shown somewhere."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("study_tables", ROOT / "scripts" / "study_tables.py")
study_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study_tables)


def test_every_generated_block_equals_its_result_file():
    for doc in study_tables.DOCS:
        text = (ROOT / doc).read_text()
        assert study_tables.regenerate(text) == text, f"{doc}: run python scripts/study_tables.py"


def test_every_result_file_is_shown_in_a_document():
    shown = {
        m.group("name") for doc in study_tables.DOCS for m in study_tables.BLOCK.finditer((ROOT / doc).read_text())
    }
    files = {study_tables.RESULT.get(name, name) for name in shown - study_tables.KEPT.keys()}
    assert files == {p.stem for p in (ROOT / "docs" / "results").glob("*.json")}
    kept = {p.name for p in (ROOT / "docs" / "results").glob("*-runs")}  # <name>-runs: the runs <name>.json summarises
    assert {f"{name}-runs" for name in files} >= kept and {
        study_tables.KEPT[name] for name in shown & study_tables.KEPT.keys()
    } <= kept


def test_a_summary_from_before_the_correction_upgrades_to_the_committed_one(tmp_path):
    """The committed comparisons are what `compare.analysis` rebuilds from the committed late values: the old format
    (effects with raw p only) upgrades, without the runs, to the same rendered block."""
    committed = json.loads((ROOT / "docs" / "results" / "bb-modes.json").read_text())
    old = {k: v for k, v in committed.items() if k not in ("correction", "pairwise", "halves")}
    old["effects"] = {
        arm: {m: {k: v for k, v in e.items() if k != "p_adjusted"} for m, e in by_metric.items()}
        for arm, by_metric in committed["effects"].items()
    }
    path = tmp_path / "bb-modes.json"
    path.write_text(json.dumps(old))
    study_tables.upgrade(path)
    assert study_tables.study(json.loads(path.read_text())) == study_tables.study(committed)
