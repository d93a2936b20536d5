"""Logging: levels follow -v/-q, and in a multi-process run only rank 0 prints (errors still show)."""

from __future__ import annotations

import io

from landmark_lora import logs


def _run(monkeypatch, verbosity: int, rank: str | None) -> str:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    out = io.StringIO()
    logs.setup(verbosity, stream=out)
    log = logs.get_logger("landmark_lora.stages.train")
    log.debug("debug line")
    log.info("info line")
    log.warning("warning line")
    return out.getvalue()


def test_default_shows_info_not_debug(monkeypatch):
    text = _run(monkeypatch, 0, None)
    assert "info line" in text and "warning line" in text and "debug line" not in text


def test_verbose_and_quiet(monkeypatch):
    assert "debug line" in _run(monkeypatch, 1, None)
    quiet = _run(monkeypatch, -1, None)
    assert "info line" not in quiet and "warning line" in quiet


def test_only_rank_zero_logs_info(monkeypatch):
    other = _run(monkeypatch, 0, "1")
    assert "info line" not in other and "warning line" in other
    assert "info line" in _run(monkeypatch, 0, "0")


def test_setup_twice_keeps_one_handler(monkeypatch):
    _run(monkeypatch, 0, None)
    _run(monkeypatch, 0, None)
    handlers = [h for h in logs.logging.getLogger(logs.ROOT).handlers if getattr(h, "_landmark_lora", False)]
    assert len(handlers) == 1
