"""Every route of the web view over HTTP (Starlette's test client): pages, filters and keyset
pages, bad parameters (a 400 that says why), the JSON API in the CLI's --json shapes, escaping
of hostile values, the token, the security headers, and that the log is never written."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from swarmlog.cli import cli
from swarmlog.web import create_app
from swarmlog.web.security import CSP
from tests.web.conftest import (
    FAILED_TASK,
    HOSTILE_AGENT,
    HOSTILE_TASK,
    IMG,
    REASON,
    SCRIPT,
    TOOL_ERROR,
)

PAGES = ("/", "/events", "/agents", "/integrity", f"/tasks/{FAILED_TASK}", "/events/1")


@pytest.fixture
def client(log_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(log_path)) as c:
        yield c


def cli_json(log_path: Path, *args: str) -> object:
    done = CliRunner().invoke(cli, ["--db", str(log_path), *args, "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def positions(rows: list[dict[str, object]]) -> list[int]:
    return [int(str(r["position"])) for r in rows]


# -- pages ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_with_the_security_headers_and_no_inline_script(
        client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert re.fullmatch(r"app;dur=\d+\.\d+", response.headers["server-timing"])
    scripts = re.findall(r"<script[^>]*>", response.text)
    assert scripts == [s for s in scripts if re.fullmatch(r'<script src="/static/app\.js\?v=\w+" defer>', s)]
    assert len(scripts) == 1
    assert not re.search(r"<[a-z]+[^>]*\son[a-z]+\s*=", response.text)  # no inline handlers
    assert " style=" not in response.text  # styles come from the stylesheet only


def test_the_static_files_are_served_with_the_same_headers(client: TestClient) -> None:
    for name in ("app.js", "app.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and response.headers["content-security-policy"] == CSP


def test_the_overview_answers_what_runs_and_who_failed_in_the_last_hour(client: TestClient) -> None:
    page = client.get("/").text
    summary = client.get("/api/summary").json()
    assert f'data-figure="total">{summary["total"]}<' in page
    assert f'data-figure="agents_online">{summary["agents_online"]}<' in page
    assert 'id="per-minute"' in page and "<rect class=\"c-task\"" in page  # the chart
    assert 'id="running-rows"' in page
    failing = page.split('id="failing-agents"')[1].split("</table>")[0]
    assert "a-fixer" in failing  # its task and its tool call failed 20 minutes ago
    assert 'id="feed" data-stream="/stream?after=' in page


def test_the_events_page_lists_the_newest_first_and_links_tasks_and_agents(client: TestClient) -> None:
    page = client.get("/events?limit=25").text
    shown = [int(p) for p in re.findall(r'<tr data-position="(\d+)">', page)]
    assert len(shown) == 25 and shown == sorted(shown, reverse=True)
    assert f'href="/tasks/{FAILED_TASK}"' in page or "/tasks/" in page
    assert 'href="/events?agent=' in page
    assert 'data-stream="/stream?after=' in page  # the newest page is live


def test_filters_narrow_the_events(client: TestClient) -> None:
    def listed(query: str) -> list[dict[str, object]]:
        response = client.get(f"/api/events?{query}")
        assert response.status_code == 200, response.text
        rows: list[dict[str, object]] = response.json()
        return rows

    failures = listed("type=task.failed&type=tool.failed&limit=500")
    assert failures and {r["event_type"] for r in failures} == {"task.failed", "tool.failed"}
    assert listed("type=task.failed,tool.failed&limit=500") == failures
    assert {r["task_id"] for r in listed(f"task={FAILED_TASK}")} == {FAILED_TASK}
    assert {r["agent_id"] for r in listed("agent=a-fixer")} == {"a-fixer"}
    assert {r["source"] for r in listed("source=tests")} == {"tests"}
    recent = listed("since=30m&limit=500")
    assert recent and all(r["timestamp"] >= recent[-1]["timestamp"] for r in recent)
    older = listed("until=90m&limit=500")
    assert older and not {r["position"] for r in older} & {r["position"] for r in recent}
    window = listed("since=25m&until=15m&type=bid.submitted")
    assert {r["task_id"] for r in window} >= {FAILED_TASK}
    page = client.get("/events?type=task.failed&agent=a-fixer").text
    assert "type task.failed ✕" in page and "agent a-fixer ✕" in page  # chips that remove one


def test_keyset_pages_walk_the_log_by_position_without_gaps_or_overlaps(client: TestClient) -> None:
    everything = positions(client.get("/api/events?limit=500").json())
    walked: list[int] = []
    url = "/api/events?limit=40"
    while url:
        response = client.get(url)
        walked += positions(response.json())
        found = re.search(r'<([^>]+)>; rel="next"', response.headers.get("link", ""))
        url = found.group(1) if found else ""
        if len(walked) >= len(everything):
            break
    assert walked[: len(everything)] == everything[: len(walked)]
    assert walked == sorted(walked, reverse=True) and len(set(walked)) == len(walked)
    # And back: the page after a position holds the next newer ones.
    newer = positions(client.get(f"/api/events?limit=10&after={everything[30]}").json())
    assert newer == everything[20:30]
    html = client.get(f"/events?before={everything[9]}&limit=10").text
    assert f"after={everything[10]}" in html and f"before={everything[19]}" in html


@pytest.mark.parametrize(("query", "says"), [
    ("type=task.exploded", "unknown event type 'task.exploded'"),
    ("limit=0", "'limit' must be from 1 to 500"),
    ("limit=lots", "'limit' must be a whole number"),
    ("limit=100000", "'limit' must be from 1 to 500"),
    ("before=-3", "'before' must be a whole number"),
    ("before=10&after=3", "not both"),
    ("since=yesterday-ish", "'since' is 'yesterday-ish', not"),
    ("since=1h&until=2h", "must be before 'until'"),
    ("until=9999-99-99", "'until' is"),
    ("colour=blue", "unknown parameter 'colour'"),
    ("limit=1&limit=2", "given 2 times"),
    ("task=" + "x" * 600, "at most 500"),
    ("task=a%00b", "NUL"),
])
def test_bad_parameters_are_a_clear_400_on_the_page_the_api_and_the_stream(
        client: TestClient, query: str, says: str) -> None:
    page = client.get(f"/events?{query}")
    assert page.status_code == 400 and says in page.text.replace("&#39;", "'"), page.text
    api = client.get(f"/api/events?{query}")
    assert api.status_code == 400 and says in api.json()["error"]
    assert client.get(f"/stream?{query}").status_code == 400


@pytest.mark.parametrize("path", [
    "/events/abc", "/events/99999999999999999999999", "/agents?sort=shoe_size", "/task",
    "/api/summary?minutes=0", "/api/summary?minutes=many", "/api/agents?online=maybe",
    "/?x=1", "/integrity?verify=1", f"/tasks/{FAILED_TASK}?x=1", "/api/events/7?x=1",
])
def test_other_bad_requests_are_400s(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 400, (path, response.status_code, response.text[:300])


@pytest.mark.parametrize("path", ["/tasks/no-such-task", "/events/999999", "/api/tasks/no-such",
                                  "/api/events/999999", "/no/such/page"])
def test_what_the_log_does_not_hold_is_a_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    if path.startswith("/api/"):
        assert "error" in response.json()


def test_a_task_page_says_why_it_failed_and_draws_its_timeline(client: TestClient) -> None:
    page = client.get(f"/tasks/{FAILED_TASK}").text
    why = page.split('id="why"')[1].split("</div>")[0]
    assert REASON in why and TOOL_ERROR in why and "fs.rotate" in why
    svg = page.split('<svg class="timeline"')[1].split("</svg>")[0]
    for phase in ("phase-created", "phase-bidding", "phase-assigned", "phase-running"):
        assert f'class="span {phase}"' in svg
    assert 'class="span tool"' in svg and 'class="span tool-failed"' in svg
    assert 'class="mark end-failed"' in svg and 'class="mark fail"' in svg
    assert svg.count('class="mark bid') == 2 and 'class="mark bid-won"' in svg
    bids = page.split('id="bids"')[1].split("</table>")[0]
    assert "a-fixer" in bids and "70" in bids and "90" in bids and "won" in bids
    assert page.count('<tr data-position="') == 12  # its events, oldest first


def test_task_ids_with_slashes_and_markup_round_trip_through_links(client: TestClient) -> None:
    response = client.get("/task", params={"id": HOSTILE_TASK}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/tasks/{quote(HOSTILE_TASK, safe='')}"
    assert client.get(response.headers["location"]).status_code == 200


def test_the_agents_page_lists_the_roster_with_links_to_their_events(client: TestClient) -> None:
    page = client.get("/agents").text
    roster = client.get("/api/agents").json()
    assert len(roster) >= 7
    for agent in roster:
        assert f'href="/events?agent={quote(agent["agent_id"], safe="")}"' in page.replace("&amp;", "&") \
            or agent["agent_id"] == HOSTILE_AGENT
    by_failures = client.get("/agents?sort=tasks_failed").text
    assert by_failures.index("a-fixer") < by_failures.index("r1-a06") or "r1-a06" not in by_failures


def test_the_integrity_page_shows_the_verify_result_and_the_status(client: TestClient) -> None:
    client.get("/integrity")
    client.app.state.viewer.verifier.wait(10)  # type: ignore[attr-defined]
    page = client.get("/integrity").text
    status = client.get("/api/status").json()
    assert "All good" in page and f"<tr><th>head</th><td>{status['head']}</td></tr>" in page
    assert status["verify"]["ok"] is True and status["verify"]["events"] == status["count"]
    again = client.post("/integrity/verify", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/integrity"
    foreign = client.post("/integrity/verify", headers={"origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert client.get("/integrity/verify").status_code == 405


# -- the JSON API: the CLI's shapes -------------------------------------------------------------


def test_the_api_gives_the_rows_the_cli_prints(client: TestClient, log_path: Path) -> None:
    assert client.get("/api/events?limit=7").json() == list(reversed(
        cli_json(log_path, "events", "--limit", "7")))  # type: ignore[call-overload]
    assert client.get("/api/events?type=task.failed&limit=3").json() == list(reversed(
        cli_json(log_path, "events", "--type", "task.failed", "--limit", "3")))  # type: ignore[call-overload]
    assert client.get(f"/api/tasks/{FAILED_TASK}").json() == cli_json(log_path, "task", FAILED_TASK)
    assert client.get("/api/agents").json() == cli_json(log_path, "agents")
    assert client.get("/api/agents?online=1").json() == cli_json(log_path, "agents", "--online")
    ours, theirs = client.get("/api/summary?minutes=15").json(), cli_json(
        log_path, "summary", "--minutes", "15")
    assert ours == theirs
    one = client.get("/api/events/5").json()
    assert one == client.get("/api/events?before=6&limit=1").json()[0]


# -- hostile values -------------------------------------------------------------------------------


def test_markup_from_the_log_is_escaped_everywhere(client: TestClient) -> None:
    hostile = client.get(f"/api/events?task={quote(HOSTILE_TASK)}&type=system.error").json()[0]
    pages = ["/", "/events", "/events?type=system.error", f"/events/{hostile['position']}",
             f"/tasks/{quote(HOSTILE_TASK, safe='')}", "/agents",
             f"/events?agent={quote(HOSTILE_AGENT)}"]
    for path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        for raw in (SCRIPT, IMG, "<img src=x", "<script>window"):
            assert raw not in response.text, (path, raw)
        assert "&lt;script&gt;" in response.text or "&lt;img" in response.text, path
    assert hostile["source"] == SCRIPT and hostile["data"]["message"] == IMG  # kept as given
    assert client.get(f"/api/events?agent={quote(HOSTILE_AGENT)}").headers[
        "content-type"] == "application/json"


# -- the token ------------------------------------------------------------------------------------


def test_a_token_is_required_on_every_request(log_path: Path) -> None:
    token = "s3cret-token-123"
    with TestClient(create_app(log_path, token=token)) as c:
        for path in ("/", "/events", "/api/events", "/api/summary", "/stream", "/static/app.js",
                     f"/tasks/{FAILED_TASK}", "/integrity"):
            refused = c.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["content-security-policy"] == CSP
            assert c.get(path, headers={"authorization": "Bearer wrong-token"}).status_code == 401
        assert c.post("/integrity/verify").status_code == 401
        assert c.get("/api/summary", headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert c.get(f"/api/summary?token={token}").status_code == 200
        opened = c.get(f"/events?type=task.failed&token={token}", follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/events?type=task.failed"
        cookie = opened.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
        assert c.get("/events").status_code == 200  # the cookie now
        c.cookies.clear()
        assert c.get("/events").status_code == 401
        c.cookies.set("swarmlog_token", "0" * 64)
        assert c.get("/events").status_code == 401


# -- read-only ----------------------------------------------------------------------------------


def test_the_view_never_writes_to_the_log(log_path: Path) -> None:
    before = hashlib.sha256(log_path.read_bytes()).hexdigest()
    with TestClient(create_app(log_path)) as c:
        for path in (*PAGES, "/api/events", "/api/summary", "/api/agents", "/api/status",
                     f"/api/tasks/{FAILED_TASK}"):
            assert c.get(path).status_code == 200
        c.app.state.viewer.verifier.wait(10)  # type: ignore[attr-defined]
    assert hashlib.sha256(log_path.read_bytes()).hexdigest() == before
    wal = log_path.with_name(log_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
