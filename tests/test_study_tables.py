"""Numbers in prose come from committed result files: every generated block of README.md and docs/bb.md equals
what scripts/study_tables.py renders from docs/results, and every result file is shown somewhere."""

import importlib.util
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
    shown = {m.group("name") for doc in study_tables.DOCS for m in study_tables.BLOCK.finditer((ROOT / doc).read_text())}
    assert shown == {p.stem for p in (ROOT / "docs" / "results").glob("*.json")}
