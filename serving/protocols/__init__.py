"""The wire protocols the server speaks, one module each, each with its routes.

A protocol module owns everything between the request body and the model's input matrix for its
wire format: the route handlers, the fast decoding path that takes well-formed bodies in as few
passes as possible, and the careful path that accepts the same bodies and names the first problem
in any other. The fast path never answers an error of its own: whatever it declines goes the
careful way, so an answer never depends on which path saw the body. Each protocol has a test
that the two paths agree on generated inputs (tests/serving/test_serving_records.py,
tests/serving/test_serving_v2_tensors.py).

- ``records``: ``POST /predict``, rows as JSON records.
- ``v2``: the Open Inference Protocol (health, metadata, tensors in, tensors out).
- ``common``: what both share (JSON parsing, row limits, finite checks, value messages).

Handlers are plain functions ``(ServerState, Call) -> Answer`` declared in ``serving.routes``;
``serving.pipeline`` runs them.
"""
