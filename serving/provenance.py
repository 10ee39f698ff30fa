"""The served model's provenance, and the id every prediction answer carries instead of it.

``Provenance`` holds the seven values the image labels and the manifests carry (docs/contracts.md).
A prediction answer names the model in its body (name and version) and carries the provenance id
in the ``X-Model-Provenance-Id`` header (:data:`HEADER`): the sha256 of the seven values
(:func:`provenance_id`). The values themselves are one request away, in the model metadata
(``/v2/models/<name>``, ``parameters``, with the id), in the ``model_loaded`` log line (with the
id) and in the ``modelops_model_info`` metric's labels; whoever holds an answer finds the
provenance by its id, and checks it by recomputing the id from the values (gitops.smoke does).

Standard library only: gitops.smoke and the demos import it without the serving stack.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

#: The response header of every prediction answer (/predict, v2 infer): the provenance id.
HEADER = "X-Model-Provenance-Id"


@dataclass(frozen=True)
class Provenance:
    """Where the served model comes from: the values the image labels and manifests carry.

    ``image_digest`` is the manifest digest of the image the pod runs (``sha256:<hex>``). An image
    cannot carry its own digest, so only a deployment that pins the image by digest sets it
    (``MODELOPS_IMAGE_DIGEST``); anywhere else it is empty, like every value nobody set.
    """

    name: str
    version: str
    stage: str
    git_commit: str
    image_digest: str
    data_sha256: str
    model_sha256: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def as_id(self) -> str:
        """This provenance's id (:func:`provenance_id`)."""
        return provenance_id(self.as_dict())


#: The provenance's fields, in order: what metadata, logs and the model-info metric report.
FIELDS = tuple(field.name for field in fields(Provenance))


def provenance_id(values: Mapping[str, Any]) -> str:
    """The id of a provenance given as its seven values by field name: the sha256 (hex) of them
    as compact JSON, keys sorted, every value a string. KeyError names a missing field.

    Callers: ``Provenance.as_id`` (the server), and whoever checks an answer's id against the
    values a server reports (gitops.smoke)."""
    record = {name: str(values[name]) for name in FIELDS}
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
