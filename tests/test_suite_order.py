"""`make test`'s file order (tests/helpers/suite_order.py, RUN_FIRST): the longest files start first, so the two
xdist workers finish together. The list only works while its files exist and xdist keeps the
collection order."""

from __future__ import annotations

import re

from tests.helpers.suite_order import RUN_FIRST
from tests.helpers.workspace import REPO


def test_every_run_first_file_exists_once():
    assert RUN_FIRST, "RUN_FIRST is empty: make test's longest files would start wherever xdist puts them"
    assert len(set(RUN_FIRST)) == len(RUN_FIRST)
    missing = [path for path in RUN_FIRST if not (REPO / path).is_file()]
    assert not missing, f"RUN_FIRST names files that are gone (renamed or split?): {missing}"


def test_make_test_keeps_the_collection_order():
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^test: install\n\t(.+)$", makefile, re.MULTILINE)
    assert recipe, "no `test: install` target in the Makefile"
    command = recipe.group(1)
    assert "--dist loadfile" in command and "--no-loadscope-reorder" in command, command
