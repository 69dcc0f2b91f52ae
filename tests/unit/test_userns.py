"""Building without root: the id map, the checks before a build, the
namespace detection (the namespace itself is entered by the integration
test that builds as an ordinary user)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmdebootstrap.host import userns


def test_the_largest_range_of_the_user_or_their_uid(tmp_path: Path) -> None:
    ids = tmp_path / "subuid"
    ids.write_text("# comment\nalice:100000:65536\nbob:165536:65536\n"
                   "1001:300000:100000\nbob:bad:1\n")
    assert userns.subordinate_range(ids, "alice", 1000) == (100000, 65536)
    assert userns.subordinate_range(ids, "bob", 1001) == (300000, 100000)
    assert userns.subordinate_range(ids, "carol", 1002) is None
    assert userns.subordinate_range(tmp_path / "missing", "alice", 1000) is None


def test_the_map_puts_the_user_at_0_and_the_range_after(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Keyed by the numeric id, which matches whatever name uid 1000 has here.
    (tmp_path / "subuid").write_text("1000:100000:200000\n")
    (tmp_path / "subgid").write_text("1000:500000:65536\n")
    monkeypatch.setattr(userns.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(userns, "kernel_problem", lambda: None)
    ids, problems = userns.id_map(1000, 1000, tmp_path / "subuid", tmp_path / "subgid")
    assert not problems and ids is not None
    # 65536 ids are enough (up to nobody, 65534): a larger range is not all mapped.
    assert ids.uid_args() == ["0", "1000", "1", "1", "100000", "65536"]
    assert ids.gid_args() == ["0", "1000", "1", "1", "500000", "65536"]


def test_every_missing_piece_is_named_with_its_fix(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "subuid").write_text("9999:100000:1000\n")
    (tmp_path / "subgid").write_text("")
    monkeypatch.setattr(userns.shutil, "which", lambda tool: None)
    monkeypatch.setattr(userns, "kernel_problem", lambda: "KERNEL")
    ids, problems = userns.id_map(9999, 9999, tmp_path / "subuid", tmp_path / "subgid")
    assert ids is None
    text = "\n".join(problems)
    assert "newuidmap and newgidmap not found" in text and "apt-get install uidmap" in text
    assert "has only 1000 ids for 9999" in text and "has no range for 9999" in text
    assert "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 9999" in text
    assert problems[-1] == "KERNEL"


@pytest.mark.parametrize(("path", "value", "fix"), [
    ("/proc/sys/kernel/unprivileged_userns_clone", 0,
     "sysctl -w kernel.unprivileged_userns_clone=1"),
    ("/proc/sys/user/max_user_namespaces", 0, "sysctl -w user.max_user_namespaces="),
    ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", 1,
     "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"),
])
def test_kernel_settings_that_forbid_namespaces(path: str, value: int, fix: str) -> None:
    problem = userns.kernel_problem(lambda p: value if p == path else None)
    assert problem is not None and fix in problem
    assert userns.kernel_problem(lambda p: None) is None


def test_the_host_namespace_is_not_inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proc = tmp_path / "self"
    proc.mkdir()
    (proc / "uid_map").write_text("         0          0 4294967295\n")
    monkeypatch.setattr(userns, "Path", lambda p: proc / Path(p).name)
    assert not userns.inside()
    assert userns.id_maps(proc) == ""
    mapped = "         0       1001          1\n         1     100000      65536\n"
    (proc / "uid_map").write_text(mapped)
    (proc / "gid_map").write_text(mapped)
    assert userns.inside()
    assert userns.id_maps(proc) == "0:1001:1,1:100000:65536 0:1001:1,1:100000:65536"
