"""The guards' fetch of a pull request's head works where the repository is private.

`verify` (environments.yml), `rendered diff` (rendered-diff.yml), `order` and `image`
(pr-guard.yml) check the base branch out
with `persist-credentials: false`, then fetch `refs/pull/N/head` as git objects. GitHub refuses
an anonymous fetch of a private repository, so the fetch carries the run's read-only token for
that one command. Played here against git's own smart HTTP server (`git http-backend`) behind
HTTP basic authentication, as GitHub's is for `x-access-token:<token>`: the workflows' exact lines
fetch the head; the line as it was, without the token, is refused. No root: the unit tier.
"""

from __future__ import annotations

import base64
import http.server
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from workflow_helpers import GITHUB_BASH, git, step_script

TOKEN = "ghs-read-only-run-token"  # noqa: S105 - not a secret: the stand-in token of this test
FETCH_STEPS = [
    ("environments.yml", "Rebuild the pull request from the protected branches and compare"),
    ("rendered-diff.yml", "Each environment's rendered diff, base against head"),
    ("pr-guard.yml", "The pull request's head"),
    ("pr-guard.yml", "The pinned image's build attestation, read from the registry by digest"),
]
#: The lines of a step's script from the token's encoding to the fetch it authenticates.
FETCH_LINES = re.compile(r"^\s*auth=.*?git fetch [^\n]*$", re.MULTILINE | re.DOTALL)
OLD_FETCH = 'git fetch --quiet origin "refs/pull/$PR_NUMBER/head"'


class PrivateGit(http.server.BaseHTTPRequestHandler):
    """git's smart HTTP protocol for the repositories under the server's ``root``, to a client
    that sends ``Authorization: Basic x-access-token:TOKEN``; 401 to any other."""

    root: Path

    def do_GET(self) -> None:
        self.serve()

    def do_POST(self) -> None:
        self.serve()

    def serve(self) -> None:
        expected = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic" or credentials != expected:  # the scheme: any case (RFC 7235)
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        cgi = subprocess.run(
            ["git", "http-backend"],
            input=self.rfile.read(length),
            env={
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(self.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "REQUEST_METHOD": self.command,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(length),
            },
            capture_output=True,
            check=True,
        )
        head, _, body = cgi.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the client's result."""


@pytest.fixture
def private_origin(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    """A private repository behind PrivateGit with a pull request's head at refs/pull/7/head:
    the server's URL (GITHUB_SERVER_URL), a clone of main whose origin is it, the head's SHA."""
    root = tmp_path / "served"
    origin = root / "acme" / "modelops.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    work = tmp_path / "author"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    for name, text in (("README.md", "base\n"), ("change.txt", "the pull request\n")):
        (work / name).write_text(text)
        git(work, "add", name)
        git(work, "-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-qm", name)
    head = git(work, "rev-parse", "HEAD").strip()
    git(work, "push", "-q", str(origin), "HEAD~1:refs/heads/main", "HEAD:refs/pull/7/head")
    handler = type("Handler", (PrivateGit,), {"root": root})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    clone = tmp_path / "runner"
    subprocess.run(["git", "init", "-q", "-b", "main", str(clone)], check=True)
    git(clone, "remote", "add", "origin", f"{url}/acme/modelops.git")
    try:
        yield url, clone, head
    finally:
        server.shutdown()
        server.server_close()


def fetch(lines: str, url: str, clone: Path, token: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(clone.parent),
        "GIT_TERMINAL_PROMPT": "0",  # no prompt for a password: refused is refused
        "GITHUB_SERVER_URL": url,
        "FETCH_TOKEN": token,
        "PR_NUMBER": "7",
    }
    return subprocess.run(
        [*GITHUB_BASH, lines], cwd=clone, env=env, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    "workflow,step", FETCH_STEPS, ids=[f"{w}:{s[:20]}" for w, s in FETCH_STEPS]
)
def test_the_guards_fetch_the_head_of_a_private_repositorys_pull_request(
    private_origin: tuple[str, Path, str], workflow: str, step: str
) -> None:
    url, clone, head = private_origin
    [lines] = FETCH_LINES.findall(step_script(workflow, step))
    done = fetch(lines, url, clone, TOKEN)
    assert done.returncode == 0, done.stderr
    assert git(clone, "rev-parse", "FETCH_HEAD").strip() == head
    assert TOKEN not in git(clone, "config", "--list")  # nothing kept after the fetch


def test_the_fetch_without_the_token_or_with_another_is_refused(
    private_origin: tuple[str, Path, str],
) -> None:
    """The defect: the fetch as it was (anonymous), and the workflows' lines with a wrong token."""
    url, clone, head = private_origin
    anonymous = fetch(OLD_FETCH, url, clone, TOKEN)
    assert anonymous.returncode != 0
    assert "could not read Username" in anonymous.stderr  # 401: git would ask for credentials
    [lines] = FETCH_LINES.findall(step_script(*FETCH_STEPS[0]))
    wrong = fetch(lines, url, clone, "ghs-another")
    assert wrong.returncode != 0
    present = subprocess.run(["git", "cat-file", "-e", head], cwd=clone, check=False)
    assert present.returncode != 0  # none of the pull request's objects came
