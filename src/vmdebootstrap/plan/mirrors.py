"""Where packages come from: the mirror, the image's apt mirror, and
whether the mirror's Release signature is checked."""

from __future__ import annotations

import re
from collections.abc import Mapping

from vmdebootstrap.host import apt_sources
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan.facts import Host
from vmdebootstrap.plan.findings import Findings

URL_RE = re.compile(r"(https?|file)://[^\s\x00-\x1f\x7f]+")


def check_mirrors(s: Settings, host: Host, found: Findings) -> str:
    """The mirror to bootstrap from: --mirror, else the host's Debian mirror."""
    mirror = s.mirror or ""
    if not mirror:
        with found.caught():
            mirror = apt_sources.default_mirror(host.etc_apt)
    found.problems.extend(url_problems(s))
    if s.apt_mirror and not s.configure_apt:
        found.problems.append("--apt-mirror requires --configure-apt")
    return mirror


def url_problems(s: Settings) -> list[str]:
    return [f"--{name}: {url!r} is not an http://, https:// or file:// URL"
            for name, url in (("mirror", s.mirror), ("apt-mirror", s.apt_mirror))
            if url is not None and not URL_RE.fullmatch(url)]


def check_signatures(s: Settings, bootstrap_opts: Mapping[str, str | None],
                     found: Findings) -> bool:
    """Whether the mirror's Release signature is verified (warn when not)."""
    if s.no_check_gpg or "no-check-gpg" in bootstrap_opts:
        found.notes.append("WARNING: the mirror's Release signature will NOT be verified")
        return False
    return True
