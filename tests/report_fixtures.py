"""Small report folders for the retrain.html tests: each bad and good state of a retrain.

    from report_fixtures import STATES, make_state, external_refs
    outcome, reports, quarantine = make_state(tmp_path, "rejected")
    dom = open_in_chromium(reports / "retrain.html", tmp_path / "profile")   # headless, network blocked
    assert body_attr(dom, "data-images-loaded") == body_attr(dom, "data-images")
"""

from __future__ import annotations

import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image, ImageDraw

STATES = ("validation_failed", "rejected", "first_run", "failed_train", "promoted")

_EVAL = {"eval_loss": 0.21, "background_consistency": 0.71, "shot_agreement": 0.6, "person_detected": 1.0,
         "clip_score": None, "clip_score_status": "skipped: eval.clip_model is not set", "output_change": 0.08,
         "sharpness_ratio": 0.93,  # a newer metric with no description: must still be shown
         "base": {"eval_loss": 0.25, "background_consistency": 0.7, "shot_agreement": 0.5, "person_detected": 1.0},
         "eval_loss_by_timestep": {"eval_loss_t100": 0.2}, "prompts": 2, "data_version": "md5:abc123",
         "mlflow_run_id": "run-new"}


def _png(path: Path, size: tuple[int, int], colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, colour)
    ImageDraw.Draw(im).rectangle((4, 4, size[0] // 2, size[1] // 2), fill="white")
    im.save(path)


def _validation(ok: bool) -> dict:
    failed = [] if ok else [{
        "check": "min_photos_per_landmark", "suite": "landmarks", "expectation": "expect_column_values_to_be_between",
        "column": "photos", "kwargs": {"min_value": 5}, "explanation": "1 landmark has fewer than 5 photos",
        "fix": "add photos of haeundae_beach to data/incoming/haeundae_beach/", "unexpected_count": 1,
        "rows": [{"landmark": "haeundae_beach", "photos": 2}], "rows_not_shown": 0}]
    return {"success": ok, "raw_dir": "data/raw", "photos": 12,
            "statistics": {"checks": 9, "passed": 9 if ok else 8, "failed": 0 if ok else 1,
                           "suites": {"photos": {"evaluated": 6, "passed": 6, "failed": 0},
                                      "landmarks": {"evaluated": 3, "passed": 3 if ok else 2, "failed": 0 if ok else 1}}},
            "failed": failed, "docs": "reports/validation/index.html"}


def make_state(tmp: Path, state: str) -> tuple[dict, Path, Path]:
    """(outcome, reports dir, quarantine dir) for one retrain state, written under ``tmp``."""
    reports, quarantine = tmp / "reports", tmp / "quarantine"
    reports.mkdir(parents=True)
    # ingest: one decodable rejected photo, one that is not an image, one metadata row with no file
    _png(quarantine / "gyeongbokgung" / "blurry.png", (64, 48), "navy")
    (quarantine / "gyeongbokgung" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (quarantine / "rejections.csv").write_text(
        "file,reason,quarantined_as,rejected_at\n"
        "gyeongbokgung/blurry.png,too small: 64x48 < 128 px,gyeongbokgung/blurry.png,2026-12-01T06:00:00\n"
        "gyeongbokgung/broken.jpg,<b>not decodable</b>: cannot identify image,gyeongbokgung/broken.jpg,2026-12-01T06:00:00\n"
        "metadata.csv row 7,metadata row without file,,2026-12-01T06:00:00\n", encoding="utf-8")
    rejected = [["gyeongbokgung/blurry.png", "too small: 64x48 < 128 px"],
                ["gyeongbokgung/broken.jpg", "<b>not decodable</b>: cannot identify image"],
                ["metadata.csv row 7", "metadata row without file"]]
    photos = {"pending": 15, "untrained": 12, "ingest": {
        "accepted": 12, "rejected": rejected, "left": 0, "rejections_csv": str(quarantine / "rejections.csv"),
        "reasons": {"too small": 1, "not decodable": 1, "metadata row without file": 1}}}
    outcome = {"flow_run_id": "flow-123", "workdir": str(tmp), "photos": photos}
    (reports / "validation.json").write_text(json.dumps(_validation(state != "validation_failed")))
    if state == "validation_failed":
        outcome.update(status="failed", champion=None, reason="retrain failed at stage 'validate': dataset contract broken",
                       failure={"stage": "validate", "cause": "dataset contract broken: 1 of 9 checks failed",
                                "transient": False, "details": "ERROR: failed to reproduce 'validate'"})
        return outcome, reports, quarantine
    if state == "failed_train":  # an earlier run's outputs are still on disk
        (reports / "eval.json").write_text(json.dumps({**_EVAL, "mlflow_run_id": "run-old"}))
        outcome.update(status="failed", champion="1", reason="retrain failed at stage 'train': CUDA out of memory",
                       failure={"stage": "train", "cause": "RuntimeError: CUDA out of memory", "transient": False,
                                "details": "Traceback ...\nRuntimeError: CUDA out of memory"})
        return outcome, reports, quarantine
    (reports / "eval.json").write_text(json.dumps(_EVAL))
    (tmp / "models" / "adapter").mkdir(parents=True)  # what lora_export writes next to the adapter
    (tmp / "models" / "adapter" / "adapter_metadata.json").write_text(json.dumps(
        {"files": {}, "metadata": {"git_sha": "0123abcd", "data_version": "md5:abc123", "base_model": "tiny"}}))
    (reports / "train.json").write_text(json.dumps({"mlflow_run_id": "run-new", "steps": 4}))
    plots = reports / "plots"
    plots.mkdir()
    (plots / "train_loss.csv").write_text("step,loss,lr\n1,0.5,1e-4\n2,0.4,1e-4\n3,0.35,1e-4\n4,0.3,1e-4\n")
    (plots / "eval_loss.csv").write_text("step,eval_loss\n2,0.26\n4,0.21\n")
    _png(reports / "samples" / "gyeongbokgung.png", (400, 300), "darkgreen")
    _png(reports / "samples" / "haeundae_beach.png", (400, 300), "teal")
    chall = {"version": "2" if state != "first_run" else "1", "run_id": "run-new",
             "metrics": {k: _EVAL[k] for k in ("eval_loss", "background_consistency", "shot_agreement",
                                                "output_change", "sharpness_ratio")}}
    prev = None if state == "first_run" else {"version": "1", "run_id": "run-old", "rescored": True, "metrics": {
        "eval_loss": 0.2 if state == "rejected" else 0.3, "background_consistency": 0.72,
        "shot_agreement": 0.55, "output_change": 0.07}}
    if state == "rejected":
        decision, reason = "rejected", "eval_loss did not improve enough: eval_loss 0.21000 vs champion 0.20000: -5.00%"
        champion = "1"
    elif state == "first_run":
        decision, reason, champion = "promoted", "first adapter: passed the sanity gates and there is no champion yet", "1"
    else:
        decision, reason, champion = "promoted", "better than the champion: eval_loss +30.00%; guards held", "2"
    (reports / "promotion.json").write_text(json.dumps({
        "decision": decision, "reason": reason, "checks": [reason], "challenger": chall, "previous_champion": prev,
        "champion": champion, "registered_model": "landmark-lora", "at": "2026-12-01T06:01:00"}))
    outcome.update(status="trained", mlflow_run_id="run-new", decision=decision, decision_reason=reason,
                   challenger_version=chall["version"], champion=champion,
                   reason=f"trained and judged: {decision} version {chall['version']}: {reason}")
    return outcome, reports, quarantine


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data", "xlink:href", "formaction",
                        "background", "manifest", "ping", "cite"):
                self.refs.append(value or "")
            if name == "style":
                self.refs += re.findall(r"url\(\s*['\"]?([^'\")]*)", value or "")


def external_refs(page: str) -> list[str]:
    """Every URL the page would fetch or link that is not data:, a relative path or an #anchor."""
    parser = _Refs()
    parser.feed(page)
    refs = parser.refs + re.findall(r"url\(\s*['\"]?([^'\")]*)", page) + re.findall(r"@import\s+['\"]?([^'\";]+)", page)
    bad = []
    for ref in refs:
        ref = ref.strip()
        if ref.startswith(("data:", "#")) or ref == "":
            continue
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", ref) or ref.startswith("//"):
            bad.append(ref)  # http:, https:, file:, ftp:, //host ...
    return bad


CHROMIUM = Path("/usr/bin/chromium")


def open_in_chromium(page: Path, profile: Path) -> str:
    """The DOM after load, from headless Chromium that cannot reach any host."""
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}",
           "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",  # no name resolves
           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # and no connection goes out
           "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def body_attr(dom: str, name: str) -> str:
    match = re.search(rf"<body[^>]*\s{name}=\"([^\"]*)\"", dom)
    assert match, f"<body {name}=...> not set: the page's load script did not run\n{dom[:500]}"
    return match.group(1)
