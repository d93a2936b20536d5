"""Logging: levels follow -v/-q, and in a multi-process run only rank 0 prints (errors still show)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

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


# ---------------------------------------------------------------- the CLI's -v / -q (before the command)

REPO_PARAMS = str(Path(__file__).resolve().parents[1] / "params.yaml")


@pytest.fixture
def cli(tmp_path, capsys):
    """main(argv) in this process; returns (exit code, stdout, stderr). Logging is put back afterwards."""
    from landmark_lora.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--params", REPO_PARAMS, *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    yield run
    logs.setup(0)


def test_quiet_prints_no_info_lines_only_the_result(cli, tmp_path):
    code, out, _ = cli("-q", "sample-data", "--out", str(tmp_path / "q"))
    assert code == 0 and "rendering the synthetic photo set" not in out
    assert out.splitlines() == [f"sample-data: rendered 180 labelled photos (150 with a person, 30 background plates) "
                                f"into {tmp_path / 'q'}/ "
                                f"(labels in {tmp_path / 'q'}/metadata.csv)"]


def test_default_shows_info_and_verbose_shows_debug(cli, tmp_path):
    _, out, _ = cli("sample-data", "--out", str(tmp_path / "d"))
    assert "sample-data: rendering the synthetic photo set" in out and "DEBUG" not in out
    _, out, _ = cli("-v", "sample-data", "--out", str(tmp_path / "v"))
    assert "DEBUG landmark_lora.cli: landmark-lora sample-data: params" in out
    assert "INFO landmark_lora.cli: sample-data: rendering" in out


def test_an_unknown_option_is_still_an_error(cli, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli("-x", "sample-data")
    assert exit_.value.code == 2 and "unrecognized arguments: -x" in capsys.readouterr().err


def test_retrain_steps_log_instead_of_printing(capsys):
    """The flow's default ``say`` is the landmark_lora.retrain logger: the CLI's set-up prints it."""
    from landmark_lora.retrain.errors import say

    logs.setup(-1)
    say("quiet line")
    logs.setup(0)
    say("report line")
    assert capsys.readouterr().out == "report line\n"
