"""Shared fixtures of the training tests: one reproduced clone per session, copied where needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_helpers import clone, make_origin, repro, stages_run


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A fresh clone of the pipeline (bare origin, local DVC remote), reproduced once; and the
    stages that first ``dvc repro`` ran. Tests never change it: they use ``private_copy``."""
    tmp = tmp_path_factory.mktemp("reproduced")
    repo = clone(make_origin(tmp), tmp / "clone", tmp / "dvc-remote")
    return repo, stages_run(repro(repo))
