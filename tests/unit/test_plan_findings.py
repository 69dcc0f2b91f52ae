"""plan.findings: how every checker reports problems and notes."""

from __future__ import annotations

import pytest

from vmdebootstrap.errors import UsageError
from vmdebootstrap.plan.findings import Findings


def test_caught_keeps_every_problem_and_goes_on() -> None:
    found = Findings()
    with found.caught():
        raise UsageError(["one", "two"])
    with found.caught():
        pass
    assert found.problems == ["one", "two"]
    assert found.notes == []


def test_caught_lets_other_errors_through() -> None:
    found = Findings()
    with pytest.raises(ValueError), found.caught():
        raise ValueError("a bug, not a usage problem")
    assert found.problems == []


def test_refuse_if_any_reports_all_together() -> None:
    found = Findings(problems=["--a: bad", "--b: worse"], notes=["fine"])
    with pytest.raises(UsageError) as info:
        found.refuse_if_any()
    assert info.value.problems == ["--a: bad", "--b: worse"]


def test_notes_alone_do_not_refuse() -> None:
    Findings(notes=["just so you know"]).refuse_if_any()
