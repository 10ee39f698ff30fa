"""The suite's own rules: in CI a skipped test fails the run; what needs root is in the e2e tier."""

import ast
import re
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py").read_text()
SKIPPING_TEST = """
import pytest

def test_needs_a_tool():
    pytest.skip("tool not installed")
"""


def test_it_fails_a_skipped_test_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(SKIPPING_TEST)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*skipped in CI, which counts as a failure*tool not installed*"])


def test_it_keeps_a_skip_a_skip_outside_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(SKIPPING_TEST)
    pytester.runpytest_inprocess().assert_outcomes(skipped=1)


# --- the tiers (mk/tests.mk) ------------------------------------------------------------------

TESTS = Path(__file__).parent
#: What only root can install or run here: an Nginx + uWSGI stack, podman, the image, the drift
#: alert loop (tests/alert_loop: a stack, Prometheus and Alertmanager).
NEEDS_ROOT = re.compile(
    r"\bneed_nginx\(|\bstart_stack\(|\bStack\(|\bstack: Stack\b|\brequire_podman\(|\bpodman\("
    r"|\brunning_pod\(|\bbuilt_image\b|\bdrift_loop\b|\bstack_target\("
)
E2E_MODULE = re.compile(r"^pytestmark = pytest\.mark\.e2e\b", re.MULTILINE)


def marked_e2e(node: ast.FunctionDef) -> bool:
    return any("mark.e2e" in ast.unparse(decorator) for decorator in node.decorator_list)


def root_needing_lines(source: str) -> list[int]:
    """Lines that use what only root installs outside an e2e module or an e2e-marked test."""
    if E2E_MODULE.search(source):
        return []
    lines = source.splitlines()
    exempt: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and marked_e2e(node):
            exempt.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return [n for n, line in enumerate(lines, 1) if NEEDS_ROOT.search(line) and n not in exempt]


def test_every_module_that_needs_root_is_in_the_e2e_tier() -> None:
    unmarked = {
        str(path.relative_to(TESTS)): lines
        for path in sorted(TESTS.rglob("test_*.py"))
        if path != Path(__file__) and (lines := root_needing_lines(path.read_text()))
    }
    assert unmarked == {}, "mark these tests (or modules) e2e: make test-unit runs without root"


def test_the_tier_check_finds_a_stack_in_an_unmarked_module() -> None:
    source = "def test_x(tiny_model):\n    need_nginx()\n    stack = start_stack(tiny_model)\n"
    assert root_needing_lines(source) == [2, 3]
    assert root_needing_lines("import pytest\npytestmark = pytest.mark.e2e\n" + source) == []
    marked = "@pytest.mark.e2e\n" + source
    assert root_needing_lines(marked) == []
    assert root_needing_lines(marked + "def test_y():\n    start_stack(None)\n") == [6]
    assert root_needing_lines("def test_z(drift_loop):\n    pass\n") == [1]
    # the benchmark's stack (bench/run.py), as test_serving_bench.py once ran it in the quick tier
    bench = "def test_z(model):\n    with run.stack_target(model) as (url, _):\n        pass\n"
    assert root_needing_lines(bench) == [2]
