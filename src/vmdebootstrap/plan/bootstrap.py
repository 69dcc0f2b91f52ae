"""How the root is bootstrapped: the tool, its options and variant, and the
cache of bootstrapped roots."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from vmdebootstrap.intent.options import close_match
from vmdebootstrap.intent.settings import Settings
from vmdebootstrap.plan.findings import Findings
from vmdebootstrap.plan.outputs import existing_ancestor

# debootstrap option words accepted in --debootstrapopts; the value says
# whether the word takes =VALUE.
DEBOOTSTRAP_OPTS = {
    "variant": True, "components": True, "include": True, "exclude": True,
    "keyring": True, "no-check-gpg": False, "merged-usr": False, "no-merged-usr": False,
    "extractor": True, "no-resolve-deps": False, "verbose": False, "print-debs": False,
}
MMDEBSTRAP_VARIANTS = {"minbase", "buildd", "essential", "apt", "required", "important",
                       "standard", "custom", "extract"}


@dataclass(frozen=True)
class Bootstrap:
    tool: str  # debootstrap | mmdebstrap
    opts: tuple[tuple[str, str | None], ...]  # --debootstrapopts, parsed

    @property
    def options(self) -> dict[str, str | None]:
        return dict(self.opts)

    @property
    def variant(self) -> str | None:
        return self.options.get("variant")

    @property
    def components(self) -> tuple[str, ...]:
        return tuple((self.options.get("components") or "main").split(","))


def parse_debootstrapopts(words: tuple[str, ...]) -> tuple[list[tuple[str, str | None]],
                                                             list[str]]:
    opts: list[tuple[str, str | None]] = []
    problems: list[str] = []
    for word in words:
        key, eq, value = word.lstrip("-").partition("=")
        if key not in DEBOOTSTRAP_OPTS:
            close = close_match(key, DEBOOTSTRAP_OPTS)
            problems.append(f"--debootstrapopts: unknown option '{key}'; " + (
                f"did you mean {close}?" if close
                else f"known: {', '.join(sorted(DEBOOTSTRAP_OPTS))}"))
        elif DEBOOTSTRAP_OPTS[key] and not (eq and value):
            problems.append(f"--debootstrapopts: '{key}' needs a value, as in {key}=VALUE")
        elif not DEBOOTSTRAP_OPTS[key] and eq:
            problems.append(f"--debootstrapopts: '{key}' takes no value")
        else:
            opts.append((key, value if eq else None))
    return opts, problems


def check_bootstrap(s: Settings, found: Findings) -> Bootstrap:
    words, problems = parse_debootstrapopts(s.debootstrapopts)
    found.problems.extend(problems)
    opts = dict(words)
    if "keyring" in opts and not Path(str(opts["keyring"])).is_file():
        found.problems.append(f"--debootstrapopts: keyring {opts['keyring']} does not exist")
    tool = s.bootstrap_tool
    why = mmdebstrap_cannot(opts) if tool == "mmdebstrap" else None
    if why:
        found.notes.append(f"using debootstrap instead of mmdebstrap: {why}")
        tool = "debootstrap"
    # shutil.which, looked up when called: the tests replace it.
    if shutil.which(tool) is None and not s.dry_run:
        found.problems.append(f"--bootstrap-tool: {tool} is not installed "
                              f"(apt-get install {tool})")
    return Bootstrap(tool=tool, opts=tuple(words))


def check_cache(s: Settings, default: Path, found: Findings) -> Path | None:
    """The cache directory (None with --no-cache): --cache-dir, else the host's default."""
    if s.no_cache:
        return None
    cache_dir = s.cache_dir or str(default)
    found.problems.extend(cache_dir_problems(cache_dir))
    return Path(cache_dir)


def mmdebstrap_cannot(opts: dict[str, str | None]) -> str | None:
    """Why mmdebstrap cannot do what the debootstrap options ask, if it cannot."""
    if "exclude" in opts:
        return "it has no --exclude"
    for key in ("extractor", "no-resolve-deps", "merged-usr", "no-merged-usr"):
        if key in opts:
            return f"it has no equivalent of debootstrap's --{key}"
    variant = opts.get("variant")
    if variant and variant not in MMDEBSTRAP_VARIANTS:
        return f"variant {variant} is debootstrap's only"
    return None


def cache_dir_problems(cache_dir: str) -> list[str]:
    """--cache-dir: absolute, and it (or its nearest existing parent) writable."""
    path = Path(cache_dir)
    if not path.is_absolute():
        return [f"--cache-dir: {cache_dir!r} must be an absolute path"]
    existing = existing_ancestor(path)
    if not existing.is_dir():
        return [f"--cache-dir: {existing} is not a directory"]
    if not os.access(existing, os.W_OK):
        return [f"--cache-dir: {existing} is not writable (or use --no-cache)"]
    return []
