"""reports/retrain.html: one self-contained page per retrain state, from small fixture files."""

from __future__ import annotations

import json

import pytest
from report_fixtures import STATES, external_refs, make_state

from landmark_lora.config import ModelConfig, Params, PathsConfig
from landmark_lora.retrain.report_data import collect, load_outcome
from landmark_lora.retrain.report_html import render_html, write_html_report


def _params(reports, quarantine, models) -> Params:
    return Params(paths=PathsConfig(reports=reports, quarantine=quarantine), model=ModelConfig(dir=models))


def _page(tmp_path, state: str) -> str:
    outcome, reports, quarantine = make_state(tmp_path, state)
    rejected = [tuple(x) for x in outcome["photos"]["ingest"]["rejected"]]
    return render_html(outcome, collect(reports, quarantine, tmp_path / "models", rejected))


KEY_MESSAGES = {
    "validation_failed": ["FAILED at stage &#x27;validate&#x27;", "BROKEN", "1 landmark has fewer than 5 photos",
                          "landmark=haeundae_beach, photos=2", "add photos of haeundae_beach",
                          "No evaluation yet", "training has not run"],
    "rejected": ["REJECTED: version 2 stays challenger; champion unchanged", "eval_loss did not improve enough",
                 "champion v1 (rescored on this data)", "0.2000"],
    "first_run": ["PROMOTED: version 1 is the new champion", "no champion before this run", "First run"],
    "failed_train": ["FAILED at stage &#x27;train&#x27;", "RuntimeError: CUDA out of memory", "(untouched)",
                     "not from this run", "run-old"],
    "promoted": ["PROMOTED: version 2 is the new champion", "guards held", "md5:abc123", "run-new",
                 "git sha (adapter)</th><td><code>0123abcd"],
}


@pytest.mark.parametrize("state", STATES)
def test_each_state_says_what_happened_and_fetches_nothing(tmp_path, state):
    page = _page(tmp_path, state)
    for message in KEY_MESSAGES[state]:
        assert message in page, f"{state}: {message!r} missing"
    assert external_refs(page) == []
    # ingest: reasons counted; the decodable rejected photo has a thumbnail, the broken one says so
    assert "too small: 64x48 &lt; 128 px" in page and "not decodable: no preview" in page
    assert "no file: a metadata row" in page and "Rejected photos (this run)" in page
    assert page.count("src='data:image/png;base64,") == (1 if state in ("validation_failed", "failed_train") else 3)


def test_metrics_side_by_side_with_meanings_and_unknown_metric(tmp_path):
    page = _page(tmp_path, "promoted")
    assert "id='metric-table'" in page
    row = page.split("<code>eval_loss</code>")[1].split("</tr>")[0]
    assert [c.split("<")[0] for c in row.split("class='num'>")[1:]] == ["0.2500", "0.2100", "0.3000"]
    assert "predicts the noise on held-out photos" in row and "lower is better" in row
    assert "<code>sharpness_ratio</code>" in page and "newer metric without a description" in page
    assert "skipped: eval.clip_model is not set" in page
    assert page.count("<polyline") == 2  # train and eval loss, inline SVG


def test_everything_from_files_is_escaped(tmp_path):
    page = _page(tmp_path, "validation_failed")
    assert "<b>not decodable</b>" not in page and "&lt;b&gt;not decodable&lt;/b&gt;" in page


def test_external_refs_catches_a_remote_reference():
    # the checker itself must be able to fail
    assert external_refs("<img src='https://cdn.example/x.png'>") == ["https://cdn.example/x.png"]
    assert external_refs("<link href='//cdn.example/s.css'>") == ["//cdn.example/s.css"]
    assert external_refs("<style>body{background:url(http://x/y.png)}</style>") == ["http://x/y.png"]
    assert external_refs("<div style=\"background:url('file:///etc/x')\"></div>") == ["file:///etc/x"] * 2
    assert external_refs("<a href='#metrics'><img src='data:image/png;base64,AA'><img src='samples/a.png'></a>") == []


def test_write_and_rebuild_without_outcome(tmp_path):
    outcome, reports, quarantine = make_state(tmp_path, "rejected")
    (reports / "retrain.json").write_text(json.dumps(outcome))
    params = _params(reports, quarantine, tmp_path / "models")
    path = write_html_report(load_outcome(reports), params, log_mlflow=False)
    assert path == reports / "retrain.html" and "REJECTED" in path.read_text(encoding="utf-8")
    (reports / "retrain.json").unlink()
    page = write_html_report(load_outcome(reports), params, log_mlflow=False).read_text(encoding="utf-8")
    assert "status: unknown" in page and "rebuilt from the report files alone" in page
    assert "Rejected photos (latest in rejections.csv)" in page
    assert "id='metric-table'" in page and external_refs(page) == []


def test_mlflow_failure_is_reported_not_raised(tmp_path):
    outcome, reports, quarantine = make_state(tmp_path, "promoted")
    params = _params(reports, quarantine, tmp_path / "models").model_copy(update={"mlflow": None})  # configure() fails
    said: list[str] = []
    path = write_html_report(outcome, params, log=said.append)
    assert path.is_file() and said and "could not log" in said[0] and "run-new" in said[0]
