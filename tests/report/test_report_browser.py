"""reports/retrain.html in a real browser: headless Chromium with every network request blocked.

Needs Debian's `chromium` (/usr/bin/chromium; `.ci/run` installs it when apt can). Without it
the test is skipped, and the skip says why (pytest -ra lists it in the summary).
"""

from __future__ import annotations

import pytest
from report_fixtures import CHROMIUM, body_attr, make_state, open_in_chromium

from landmark_lora.retrain.report_data import collect
from landmark_lora.retrain.report_html import render_html


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
    images, loaded = int(body_attr(dom, "data-images")), int(body_attr(dom, "data-images-loaded"))
    assert images == 3 and loaded == images  # two sample grids and one rejected-photo thumbnail
    assert body_attr(dom, "data-metric-table-visible") == "yes"
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
    assert body_attr(dom, "data-images") == "2" and body_attr(dom, "data-images-loaded") == "0"
