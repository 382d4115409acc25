"""``bench/_support.write_section``: a benchmark rewrites its own section of RESULTS.md and nothing else.

RESULTS.md holds generated sections (between ``<!-- bench:NAME -->`` markers) with notes written by
hand between them, which read the figures of the section above: a rerun must leave them where they are.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parents[1] / "bench" / "_support.py"

HAND_WRITTEN = """# Benchmark results

A note before every section.

<!-- bench:first -->
first figures
<!-- /bench:first -->

The note that reads the first figures.

<!-- bench:second -->
second figures
<!-- /bench:second -->

The note that reads the second figures.
"""


@pytest.fixture
def support(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_support_under_test", SUPPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = tmp_path / "RESULTS.md"
    results.write_text(HAND_WRITTEN)
    monkeypatch.setattr(module, "RESULTS", results)
    return module


def test_a_section_is_replaced_where_it_stands_and_the_notes_around_it_stay(support):
    support.write_section("first", "new first figures\n| a | b |")

    assert support.RESULTS.read_text() == HAND_WRITTEN.replace(
        "first figures\n<!-- /bench:first -->", "new first figures\n| a | b |\n<!-- /bench:first -->"
    )


def test_a_section_written_again_with_its_own_text_leaves_the_file_as_it_was(support):
    support.write_section("second", "second figures")

    assert support.RESULTS.read_text() == HAND_WRITTEN


def test_a_new_section_goes_at_the_end(support):
    support.write_section("third", "third figures")

    third = "<!-- bench:third -->\nthird figures\n<!-- /bench:third -->\n"
    assert support.RESULTS.read_text() == HAND_WRITTEN + "\n" + third
