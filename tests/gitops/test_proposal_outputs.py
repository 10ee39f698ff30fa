"""What gitops.deploy, gitops.promote and gitops.rollback print for $GITHUB_OUTPUT: the same five
keys in one order (gitops.proposal.print_outputs), so a workflow reads any of them alike."""

from __future__ import annotations

import pytest

from gitops.proposal import OUTPUTS, print_outputs


def test_the_outputs_are_printed_once_each_in_one_order(capsys: pytest.CaptureFixture[str]) -> None:
    print_outputs(digest="sha256:ab", version="v1", commit="c0", branch="b", changed="true")
    assert (
        capsys.readouterr().out
        == "changed=true\nbranch=b\ncommit=c0\nversion=v1\ndigest=sha256:ab\n"
    )
    assert OUTPUTS == ("changed", "branch", "commit", "version", "digest")


@pytest.mark.parametrize("keys", [OUTPUTS[:-1], (*OUTPUTS, "image")], ids=["missing", "extra"])
def test_a_missing_or_an_extra_output_is_refused(
    keys: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=r"^outputs "):
        print_outputs(**dict.fromkeys(keys, "x"))
    assert capsys.readouterr().out == ""
