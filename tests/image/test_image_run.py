"""The built image, run: as its non-root user on a read-only root filesystem, and in the pod the
chart defines (the overlay of the model's stage, rendered and played by images/pod.py), behind the
Nginx sidecar, answering predictions with the registered model's provenance.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from serving import readiness
from serving.provenance import HEADER, provenance_id
from serving.readiness import NotReadyError

from .conftest import ROOT, BuiltImage
from .podman_cli import pod_runner, podman, podman_env, require_kubectl
from .registry_fixture import write_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pod(built_image: BuiltImage) -> Iterator[str]:
    """The overlay of the registered model's stage with the built image, running; its base URL.
    The image is tagged with HEAD's SHA, as a real build is: the overlay makes the tag the
    server's git commit."""
    require_kubectl()
    with pod_runner().running_pod(built_image.name, env=built_image.registry.stage) as running:
        yield running.base


def test_a_pod_whose_app_exits_is_reported_at_once_with_the_containers_logs(
    built_image: BuiltImage,
) -> None:
    """The overlay pins a model sha256 the image does not ship: the server refuses the model,
    uWSGI exits (need-app), the pod restarts it, and the runner's wait says so at once instead
    of waiting out 90 s."""
    require_kubectl()
    registry = built_image.registry
    wrong = {
        "modelops.io/model-version": registry.version,
        "modelops.io/model-sha256": "0" * 64,
    }
    started = time.monotonic()
    with (
        pytest.raises(NotReadyError) as raised,
        pod_runner().running_pod(built_image.name, registry.stage, annotations=wrong),
    ):
        pass
    assert time.monotonic() - started < 60, "reported at once, not after the limit"
    first = str(raised.value).splitlines()[0]
    pattern = (
        r"the pod (model-\w+-pod-0) at http://127\.0\.0\.1:\d+/v2/health/ready: "
        r"container \1-app exited .*before it was ready"
    )
    match = re.fullmatch(pattern, first)
    assert match, f"{first}\n{raised.value.log}"
    assert f"--- podman logs {match[1]}-nginx" in raised.value.log
    assert "0" * 64 in raised.value.log, "the app's log names the pinned sha256"


def test_predicts_through_the_nginx_sidecar_with_provenance(
    pod: str, built_image: BuiltImage
) -> None:
    registry = built_image.registry
    answer = requests.post(f"{pod}/predict", json={"instances": [registry.sample]}, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["labels"] == [registry.sample_label]
    assert (body["model_name"], body["model_version"]) == (registry.name, registry.version)
    served = requests.get(f"{pod}/v2/models/{registry.name}", timeout=10).json()["parameters"]
    assert served["stage"] == registry.stage
    assert served["model_sha256"] == registry.sha256
    assert served["git_commit"] == built_image.git_commit
    assert answer.headers[HEADER] == served["provenance_id"] == provenance_id(served)


def test_probes_answer_through_nginx(pod: str) -> None:
    assert requests.get(f"{pod}/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(f"{pod}/v2/health/ready", timeout=5).json() == {"ready": True}


def test_bad_input_is_a_4xx_json_error_not_a_500(pod: str) -> None:
    for method, status in (("POST", 400), ("DELETE", 405)):
        answer = requests.request(method, f"{pod}/predict", data=b"{not json", timeout=5)
        assert answer.status_code == status
        assert answer.headers["Content-Type"].startswith("application/json")
        assert "error" in answer.json()


def uwsgi_get(sock: Path, path: str) -> bytes:
    """GET ``path`` over uWSGI's own protocol on its unix socket (what Nginx's uwsgi_pass
    speaks): the app's answer without Nginx. b"" while the socket is not there or not ready."""
    env = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    body = b"".join(
        struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode()
        for k, v in env.items()
    )
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(5)
            conn.connect(str(sock))
            conn.sendall(struct.pack("<BHB", 0, len(body), 0) + body)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
            return answer
    except OSError:
        return b""


@pytest.fixture(scope="module")
def strict_container(
    built_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app alone, root filesystem read-only and NO writable default tmpfs: only /tmp and
    /run/modelops (the two emptyDirs of the pod) can be written. The socket directory is a
    mode-1777 host directory, as Kubernetes makes an emptyDir (podman ignores a tmpfs mode
    there)."""
    name = f"modelops-image-ro-{secrets.token_hex(4)}"
    socket_dir = tmp_path_factory.mktemp("socket")
    socket_dir.chmod(0o1777)
    podman(
        "run", "--detach", "--name", name, "--network", "none",
        "--read-only", "--read-only-tmpfs=false",
        "--tmpfs", "/tmp:rw,mode=1777", "--volume", f"{socket_dir}:/run/modelops",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        built_image.name,
    )  # fmt: skip

    def started(seconds: float) -> str | None:
        """None once uWSGI's socket is there and its master-start hook has run: uWSGI 2.0 treats
        SIGTERM as a brutal *reload* until that hook has rebound it to the graceful shutdown,
        and a worker can answer a little before that. (podman exec and logs return at once.)"""
        if podman("exec", name, "test", "-S", "/run/modelops/uwsgi.sock", check=False).returncode:
            return "no socket /run/modelops/uwsgi.sock yet"
        if "gracefully_kill_them_all" not in podman("logs", name).stderr:
            return "the master-start hook has not run yet"
        return None

    try:
        container = readiness.Containers([name], podman_env())
        readiness.wait_until(
            started,
            90,
            f"the container {name}",
            exited=container.exited,
            log_tail=container.log_tail,
        )
        yield name
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


def test_serves_with_a_read_only_root_filesystem_as_uid_10001(strict_container: str) -> None:
    ids = podman(
        "exec", strict_container, "python3", "-c", "import os; print(os.getuid(), os.getgid())"
    )
    uid, gid = map(int, ids.stdout.split())
    assert uid >= 10000 and gid >= 10000
    for path in ("/app/x", "/var/tmp/x", "/etc/x", "/opt/venv/x"):
        denied = podman("exec", strict_container, "touch", path, check=False)
        assert denied.returncode != 0, f"{path} is writable"
        assert "Read-only file system" in denied.stderr


def test_sigterm_stops_it_gracefully_within_the_grace_period(strict_container: str) -> None:
    started = time.monotonic()
    podman("stop", "--time", "15", strict_container)
    elapsed = time.monotonic() - started
    state = json.loads(podman("inspect", strict_container).stdout)[0]["State"]
    done = podman("logs", strict_container)
    logs = (done.stdout + done.stderr)[-3000:]
    assert elapsed < 12, (
        f"took {elapsed:.1f} s: SIGTERM did not stop uWSGI (killed at 15 s)\n{logs}"
    )
    assert state["ExitCode"] in (0, 30), state  # uWSGI exits 30 after a graceful shutdown


def image_model(built_image: BuiltImage, into: Path) -> Path:
    """A copy of the image's /app/model in INTO, readable by the image's user."""
    name = f"modelops-image-model-{secrets.token_hex(4)}"
    podman("create", "--name", name, built_image.name)
    try:
        podman("cp", f"{name}:/app/model", str(into))
    finally:
        podman("rm", "--force", name, check=False)
    for path in (into, *into.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return into


def readiness_command() -> list[str]:
    """The app container's readiness probe command, as the committed dev manifests render it."""
    from gitops import environments, rendered

    text = (ROOT / rendered.path(environments.load()[0])).read_text()
    (deployment,) = [d for d in rendered.documents(text) if d["kind"] == "Deployment"]
    (app,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app"]
    command: list[str] = app["readinessProbe"]["exec"]["command"]
    return command


def run_with_model(
    built_image: BuiltImage, model_dir: Path, socket_dir: Path
) -> tuple[NotReadyError | None, list[str]]:
    """Run the image as the pod runs its app (read-only root, the socket directory and /tmp
    writable, the model pinned by MODELOPS_MODEL_SHA256 as the rendered manifest pins it) with
    MODEL_DIR mounted over /app/model; run its readiness probe in it as the kubelet does until
    one passes or the container exits (60 s at most). Returns the wait's NotReadyError (None:
    it became ready) and the container's log lines."""
    name = f"modelops-image-model-{secrets.token_hex(4)}"
    socket_dir.mkdir()
    socket_dir.chmod(0o1777)
    podman(
        "run", "--detach", "--name", name, "--network", "none",
        "--read-only", "--tmpfs", "/tmp:rw,mode=1777",
        "--volume", f"{socket_dir}:/run/modelops", "--volume", f"{model_dir}:/app/model:ro",
        "--env", f"MODELOPS_MODEL_SHA256={built_image.registry.sha256}",
        built_image.name,
    )  # fmt: skip
    probe = readiness_command()

    def ready(seconds: float) -> str | None:
        done = podman("exec", name, *probe, check=False, timeout=seconds + 5)
        return None if done.returncode == 0 else done.stderr.strip() or "probe failed"

    container = readiness.Containers([name], podman_env())
    try:
        readiness.wait_until(
            ready, 60, f"the container {name}", exited=container.exited, log_tail=container.log_tail
        )
        error = None
    except NotReadyError as raised:
        error = raised
    finally:
        done = podman("logs", name, check=False)
        podman("rm", "--force", "--time", "0", name, check=False)
    return error, (done.stdout + done.stderr).splitlines()


def refusal(error: NotReadyError | None, lines: list[str]) -> dict[str, str]:
    """The one log line saying why the container never became ready, as JSON."""
    assert error is not None, "the container became ready"
    assert re.fullmatch(
        r"the container \S+: container \S+ exited with status 1 before it was ready", error.headline
    ), error
    assert not [line for line in lines if "Traceback" in line], lines
    why = [line for line in lines if "sha256 mismatch" in line]
    assert len(why) == 1, lines
    assert [line for line in lines if '"level":"error"' in line] == why, lines
    found: dict[str, str] = json.loads(why[0])
    assert found["event"] == "model_refused", found
    return found


def test_the_image_with_its_own_model_mounted_becomes_ready(
    built_image: BuiltImage, tmp_path: Path
) -> None:
    """What the two tests below change, and nothing else: the same run with an intact copy of
    the image's model passes its readiness probe."""
    error, lines = run_with_model(
        built_image, image_model(built_image, tmp_path / "m"), tmp_path / "s"
    )
    assert error is None, f"{error}\n" + "\n".join(lines[-20:])
    assert any('"event":"model_loaded"' in line for line in lines), lines


def test_a_container_with_tampered_model_bytes_never_becomes_ready_and_says_why_once(
    built_image: BuiltImage, tmp_path: Path
) -> None:
    """One byte of the model file changed, metadata.json left as it is."""
    model_dir = image_model(built_image, tmp_path / "m")
    card = json.loads((model_dir / "metadata.json").read_text())
    model_file = model_dir / card["model_file"]
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    tampered = hashlib.sha256(data).hexdigest()

    found = refusal(*run_with_model(built_image, model_dir, tmp_path / "s"))
    assert found["error"] == (
        f"/app/model/{card['model_file']}: sha256 mismatch: the file has {tampered}, "
        f"metadata.json records {built_image.registry.sha256}; refusing to load it"
    )


def test_a_container_with_a_model_other_than_the_manifests_pin_never_becomes_ready(
    built_image: BuiltImage, tmp_path: Path
) -> None:
    """Another model, whole and consistent (its card records its own file's sha256), where the
    manifest pins the image's: the pin refuses it."""
    other, _, _ = write_model(tmp_path / "m", c=0.5)
    assert other != built_image.registry.sha256
    for path in (tmp_path / "m", *(tmp_path / "m").iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)

    found = refusal(*run_with_model(built_image, tmp_path / "m", tmp_path / "s"))
    card = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert found["error"] == (
        f"/app/model/{card['model_file']}: sha256 mismatch: the file has {other}, the pin "
        f"(MODELOPS_MODEL_SHA256) is {built_image.registry.sha256}; refusing to load it"
    )
