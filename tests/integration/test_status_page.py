"""GET / through the status function's handler, on a real PostgreSQL: the page, its server-rendered
history (readable without JavaScript, every value escaped) and its security headers."""

from __future__ import annotations

import re

import pytest

from archiver.config import MAX_BATCH_SIZE
from archiver.engine import Archiver
from archiver.identifiers import qualified
from handlers import page, status
from local import localapi
from tests.helpers import add_customers, setup
from tests.integration.test_status_api import RecordingInvoker


@pytest.fixture
def api(db, policy, settings) -> status.StatusDeps:
    setup(db, policy)
    add_customers(db, policy, [70 + i for i in range(12)] + [5])
    return status.StatusDeps(db=db, policy=policy, settings=settings, invoker=RecordingInvoker(),
                             function_name="archiver-archive")


def get_page(deps: status.StatusDeps) -> tuple[int, dict[str, str], str]:
    result = localapi.call(localapi.build_event("GET", "/", headers={"Host": "localhost"}), deps)
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    headers.update({k.lower(): v[-1] for k, v in (result.get("multiValueHeaders") or {}).items()})
    return result["statusCode"], headers, result["body"]


def history(body: str) -> list[str]:
    return re.findall(r'<tr data-job="([0-9a-f-]{36})">', body)


def test_the_page_lists_the_recent_runs_in_its_html_newest_first(api, db, policy, settings):
    archiver = Archiver(db, policy, settings)
    first = archiver.start(dry_run=True)
    archiver.run_hop(first.id, owner="w", hop=1)
    second = archiver.start()
    archiver.run_hop(second.id, owner="w", hop=1)
    code, headers, body = get_page(api)
    assert code == 200 and headers["content-type"].startswith("text/html")
    assert history(body) == [second.id, first.id]
    row = body[body.index(f'<tr data-job="{second.id}">'):]
    assert '<span class="state state-succeeded">succeeded</span>' in row[:row.index("</tr>")]
    assert ">12<" in row[:row.index("</tr>")]  # archived: the twelve old customers
    assert "archive · dry run" in body


def test_run_log_text_is_escaped_in_the_page(api, db, policy, settings):
    job = Archiver(db, policy, settings).start()
    db.run(f"UPDATE {qualified(policy.schema_name, policy.log_table)} SET state = 'failed', "
           "error_message = :e WHERE job_id = :j", e='<script>alert("x")</script> & <b>', j=job.id)
    _, _, body = get_page(api)
    assert '<script>alert("x")</script>' not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in body


def test_the_page_allows_only_its_own_script_and_style_and_this_api(api):
    _, headers, body = get_page(api)
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp  # no CDN, no other origin
    (script,) = re.findall(r"<script>(.*?)</script>", body, re.S)
    assert page._sha256(script) in csp
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    assert "<link rel=\"icon\" href=\"data:,\">" in body  # no favicon request outside the API


def test_the_pages_batch_size_input_has_the_apis_bound_and_no_placeholder_left(api):
    _, _, body = get_page(api)
    (field,) = re.findall(r'<input id="batch-size"[^>]*>', body)
    assert f'max="{MAX_BATCH_SIZE}"' in field and f"1 to {MAX_BATCH_SIZE:,}." in body
    assert "%%" not in body


def test_the_page_still_loads_when_the_run_log_is_missing_and_says_why(db, policy, settings):
    code, _, body = get_page(status.StatusDeps(db=db, policy=policy, settings=settings, invoker=RecordingInvoker(),
                                               function_name="archiver-archive"))
    assert code == 200
    assert "run `archiver migrate` first" in body


def test_the_page_files_ship_as_package_data():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "web/*" in data["handlers"]
    assert {p.name for p in page.WEB.iterdir()} >= {"index.html", "app.css", "app.js"}
