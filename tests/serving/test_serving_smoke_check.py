"""gitops.smoke's check against a real Nginx + uWSGI stack: the server must report exactly the
release an environment's rendered manifests name, or the smoke test fails naming the field."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import PROVENANCE
from serving_testkit import MODEL_NAME, TinyModel

from devstack.stack import Stack
from gitops import rendered, smoke
from gitops.cli import ToolError

pytestmark = pytest.mark.e2e


@pytest.fixture
def release(tiny_model: TinyModel) -> rendered.Release:
    """The release the shared stack serves, as rendered manifests would name it."""
    return rendered.Release(
        image=f"localhost/modelops/model-server:{PROVENANCE['MODELOPS_GIT_COMMIT']}"
        f"@{PROVENANCE['MODELOPS_IMAGE_DIGEST']}",
        namespace="modelops-staging",
        model_name=MODEL_NAME,
        model_version=PROVENANCE["MODELOPS_MODEL_VERSION"],
        model_stage=PROVENANCE["MODELOPS_MODEL_STAGE"],
        model_sha256=str(tiny_model.metadata["model_sha256"]),
        git_commit=PROVENANCE["MODELOPS_GIT_COMMIT"],
        manifests_sha256="0" * 64,
    )


def test_a_server_that_serves_the_rendered_release_passes(
    stack: Stack, release: rendered.Release
) -> None:
    reported = smoke.check(stack.url, release)
    assert reported["version"] == release.model_version
    assert reported["image_digest"] == release.digest
    assert reported["model_sha256"] == release.model_sha256


@pytest.mark.parametrize(
    ("field", "attribute", "value"),
    [
        ("version", "model_version", "v9.9.9"),
        ("stage", "model_stage", "prod"),
        ("git_commit", "git_commit", "f" * 40),
        ("model_sha256", "model_sha256", "e" * 64),
        ("image_digest", "image", "localhost/modelops/model-server:x@sha256:" + "c" * 64),
    ],
)
def test_a_server_that_serves_another_release_fails_naming_the_field(
    stack: Stack, release: rendered.Release, field: str, attribute: str, value: str
) -> None:
    other = dataclasses.replace(release, **{attribute: value})
    with pytest.raises(ToolError, match=f"smoke: /v2 model metadata reports {field} "):
        smoke.check(stack.url, other)


def test_a_server_that_does_not_answer_fails_in_one_line(release: rendered.Release) -> None:
    with pytest.raises(ToolError, match=r"^smoke: http://127\.0\.0\.1:9/v2/health/ready did not"):
        smoke.check("http://127.0.0.1:9", release)
