"""images/pod.py's adaptation of rendered manifests to podman (no podman needed here): what two
pods played at once must not share, and what podman must not try to pull."""

from __future__ import annotations

from images import pod as pods

from .conftest import ROOT


def rendered_dev() -> list[dict]:
    from gitops import environments, rendered

    text = (ROOT / rendered.path(environments.load()[0])).read_text()
    return rendered.documents(text)


def test_two_pods_played_at_once_share_no_volume() -> None:
    first = pods.for_podman(rendered_dev(), "aaaaaa", 8001)
    second = pods.for_podman(rendered_dev(), "bbbbbb", 8002)

    def volumes(docs: list[dict]) -> set[str]:
        """The volumes podman names: one per emptyDir (its name), one per ConfigMap."""
        spec = pods.deployment(docs)["spec"]["template"]["spec"]
        mounted = {m["name"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
        assert mounted <= {v["name"] for v in spec["volumes"]}  # every mount is declared
        return {v["name"] for v in spec["volumes"] if "emptyDir" in v} | {
            v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v
        }

    assert volumes(first) & volumes(second) == set()
    spec = pods.deployment(first)["spec"]["template"]["spec"]
    assert {v["name"] for v in spec["volumes"] if "emptyDir" in v} == {
        "socket-aaaaaa", "app-tmp-aaaaaa", "nginx-tmp-aaaaaa"
    }  # fmt: skip


def test_the_pod_uses_the_local_images_and_listens_on_its_own_loopback_port() -> None:
    played = pods.for_podman(rendered_dev(), "cccccc", 8003)
    containers = pods.deployment(played)["spec"]["template"]["spec"]["containers"]
    assert {c["imagePullPolicy"] for c in containers} == {"IfNotPresent"}
    assert all("ports" not in c for c in containers)
    listen = [
        e["value"] for c in containers for e in c.get("env", []) if e["name"] == "NGINX_LISTEN"
    ]
    assert listen == ["127.0.0.1:8003"]
    assert all("namespace" not in doc["metadata"] for doc in played)


def test_a_rendering_with_monitoring_on_plays_the_same_pod(
    monitored_overlay_docs: dict[str, list[dict]],
) -> None:
    """ServiceMonitor and PrometheusRule mean nothing to podman (make demo MONITORING=on plays
    such renderings): the runner leaves them out, as it does the Service or the HPA, and the
    retraining relay's Deployment."""
    monitored = monitored_overlay_docs["dev"]
    assert {"ServiceMonitor", "PrometheusRule"} <= {doc["kind"] for doc in monitored}
    # running_rendered sets the Nginx image on the whole rendering, where the retraining relay's
    # Deployment (monitoring on) stands beside the model server's: it takes the model server's
    assert [doc["kind"] for doc in monitored].count("Deployment") == 2
    name = pods.deployment(rendered_dev())["metadata"]["name"]
    assert pods.deployment(monitored)["metadata"]["name"] == name
    assert pods.nginx_container(monitored)["name"] == pods.nginx_container(rendered_dev())["name"]
    played = pods.for_podman(monitored, "dddddd", 8004)
    assert sorted(doc["kind"] for doc in played) == sorted(
        doc["kind"] for doc in pods.for_podman(rendered_dev(), "dddddd", 8004)
    )


def test_only_a_pod_played_stoppable_restarts_on_failure_alone() -> None:
    """Always (the Deployment's; podman then restarts a container whose liveness probe fails)
    unless the pod is played for images/pod.py's stop, where podman must not start again the Nginx
    its preStop hook stopped (test_pod_drain.py shows what Always does then)."""

    def policy(docs: list[dict]) -> str | None:
        return pods.deployment(docs)["spec"]["template"]["spec"].get("restartPolicy")

    assert policy(pods.for_podman(rendered_dev(), "dddddd", 8004)) in (None, "Always")
    assert policy(pods.for_podman(rendered_dev(), "eeeeee", 8005, stoppable=True)) == "OnFailure"
