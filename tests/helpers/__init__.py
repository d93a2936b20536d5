"""Test helpers shared by the test suite and the dev tools in tools/ (never shipped in the wheel).

    from tests.helpers.workspace import build_workspace, FAST_PARAMS   # a user's clone in a temp folder
    from tests.helpers.tiny_data import write_processed                # data/processed/ in seconds
    from tests.helpers.ports import free_port                          # a free TCP port on 127.0.0.1

Imported as ``tests.helpers`` from the repository root: pytest puts it on sys.path
(pyproject's ``pythonpath``), and ``python -m tools.<name>`` runs from there.
"""
