"""reports/retrain.html in a real browser: headless Chromium with every network request blocked.

Needs Debian's `chromium` (/usr/bin/chromium; `.ci/run` installs it when apt can). Without it
the test is skipped, and the skip says why (pytest -ra lists it in the summary).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from report_fixtures import make_state

from landmark_lora.report_html import collect, render_html

CHROMIUM = Path("/usr/bin/chromium")


def open_in_chromium(page: Path, profile: Path) -> str:
    """The DOM after load, from headless Chromium that cannot reach any host."""
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}",
           "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",  # no name resolves
           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # and no connection goes out
           "--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def _body_attr(dom: str, name: str) -> str:
    match = re.search(rf"<body[^>]*\s{name}=\"([^\"]*)\"", dom)
    assert match, f"<body {name}=...> not set: the page's load script did not run\n{dom[:500]}"
    return match.group(1)


@pytest.mark.skipif(not CHROMIUM.is_file(),
                    reason="browser check of reports/retrain.html skipped: /usr/bin/chromium is missing "
                           "(install it with `apt-get install -y chromium`; .ci/run tries that)")
def test_page_loads_every_image_and_shows_the_metric_table_offline(tmp_path):
    outcome, reports, quarantine = make_state(tmp_path, "promoted")
    page = reports / "retrain.html"
    page.write_text(render_html(outcome, collect(reports, quarantine, tmp_path / "models",
                                                 [tuple(x) for x in outcome["photos"]["ingest"]["rejected"]])),
                    encoding="utf-8")
    dom = open_in_chromium(page, tmp_path / "profile")
    images, loaded = int(_body_attr(dom, "data-images")), int(_body_attr(dom, "data-images-loaded"))
    assert images == 3 and loaded == images  # two sample grids and one rejected-photo thumbnail
    assert _body_attr(dom, "data-metric-table-visible") == "yes"
    assert "PROMOTED: version 2 is the new champion" in dom


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="browser check skipped: /usr/bin/chromium is missing")
def test_the_browser_check_notices_a_broken_image(tmp_path):
    # the check itself can fail: a remote image (blocked) and a broken one do not count as loaded
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><body><img src='https://example.com/x.png'><img src='data:image/png;base64,AAAA'>"
                    "<script>addEventListener('load',function(){var i=[].slice.call(document.images);"
                    "document.body.setAttribute('data-images',i.length);document.body.setAttribute("
                    "'data-images-loaded',i.filter(function(x){return x.complete&&x.naturalWidth>0}).length)})"
                    "</script></body>", encoding="utf-8")
    dom = open_in_chromium(page, tmp_path / "profile")
    assert _body_attr(dom, "data-images") == "2" and _body_attr(dom, "data-images-loaded") == "0"
