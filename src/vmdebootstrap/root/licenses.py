"""The licence a package declares, read from its machine-readable copyright file.

Debian's copyright-format 1.0 (DEP-5) names licences by short names such as
"GPL-2+", "Expat" or "GPL-1+ or Artistic"; an SBOM wants SPDX license
expressions.  declared_license() reads the License: line of every Files
paragraph, maps each short name to an SPDX identifier where one means the
same licence, and makes the rest LicenseRef-NAME, so that the result is
always a valid SPDX expression.  Files that are not machine-readable give
None: their prose cannot be turned into an expression reliably.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# How the Format: field of copyright-format 1.0 and of its DEP-5 drafts ends.
_FORMAT_MARKERS = ("copyright-format/1.0", "deps/dep5", "dep5.mdwn")
LICENSE_REF = "LicenseRef-"

# SPDX identifiers a DEP-5 short name may use as they are (compared without
# regard to case).  Deprecated SPDX ids (GPL-2.0, GPL-2.0+, ...) are left out:
# the GNU family is mapped by _gnu() to their -only and -or-later forms.
_AS_IS = """
0BSD AFL-1.1 AFL-1.2 AFL-2.0 AFL-2.1 AFL-3.0 Apache-1.0 Apache-1.1 Apache-2.0 Artistic-1.0
Artistic-1.0-Perl Artistic-1.0-cl8 Artistic-2.0 Artistic-dist Beerware Bitstream-Vera blessing
Boehm-GC BSD-1-Clause BSD-2-Clause BSD-2-Clause-Patent BSD-2-Clause-Views BSD-3-Clause
BSD-3-Clause-Attribution BSD-3-Clause-Clear BSD-3-Clause-LBNL BSD-4-Clause BSD-4-Clause-UC
BSD-Source-Code BSL-1.0 bzip2-1.0.6 CC-BY-3.0-US CC-PDDC CC0-1.0 CDDL-1.0 CDDL-1.1
CECILL-2.0 CECILL-2.1 CECILL-B CECILL-C CPL-1.0 curl ECL-2.0 EPL-1.0 EPL-2.0 EUPL-1.1
EUPL-1.2 FSFAP FSFUL FSFULLR FSFULLRWD FTL GD HPND HPND-sell-variant ICU IJG Info-ZIP ISC
Jam Kazlib Latex2e libpng-2.0 Libpng libtiff libutil-David-Nugent Linux-man-pages-copyleft
LPPL-1.3c MirOS MIT MIT-0 MIT-CMU MIT-Modern-Variant MPL-1.0 MPL-1.1 MPL-2.0
MS-PL MS-RL NCSA NTP OFL-1.0 OFL-1.1 OLDAP-2.8 OpenSSL
OpenSSL-standalone PHP-3.0 PHP-3.01 PostgreSQL PSF-2.0 Python-2.0 Qhull RSA-MD Ruby
Sendmail SGI-B-2.0 Sleepycat SMAIL-GPL snprintf Spencer-86 Spencer-94 Spencer-99 SSH-OpenSSH
SSLeay-standalone SWL TCL TermReadKey Unicode-3.0 Unicode-DFS-2015 Unicode-DFS-2016
Unlicense UPL-1.0 Vim W3C W3C-20150513 WTFPL X11 Xfig XFree86-1.1 Zlib zlib-acknowledgement
ZPL-2.0 ZPL-2.1
"""

# Debian's own spellings of licences SPDX knows under another name.
_ALIASES = {
    "expat": "MIT",
    # Debian's "Artistic" is /usr/share/common-licenses/Artistic, Perl's text
    # (clause 7 on C subroutines, clause 8 on aggregation): SPDX's
    # Artistic-1.0-Perl, not the OSI's Artistic-1.0.
    "artistic": "Artistic-1.0-Perl",
    "artistic-1": "Artistic-1.0-Perl",
    "artistic-2": "Artistic-2.0",
    "apache-2": "Apache-2.0",
    "mpl-2": "MPL-2.0",
    "psf-2": "PSF-2.0",
    "python-2": "Python-2.0",
    "boost": "BSL-1.0",
    "boost-1.0": "BSL-1.0",
    "bsl-1": "BSL-1.0",
    "cc0": "CC0-1.0",
    "cc-0": "CC0-1.0",
    "bsd-2": "BSD-2-Clause",
    "bsd2": "BSD-2-Clause",
    "bsd-3": "BSD-3-Clause",
    "bsd3": "BSD-3-Clause",
    "bsd-4": "BSD-4-Clause",
    "bsd-0-clause": "0BSD",
    "openldap-2.8": "OLDAP-2.8",
    "zope-2.1": "ZPL-2.1",
    "zpl-2": "ZPL-2.0",
    "sil-1.1": "OFL-1.1",
    "sil-ofl-1.1": "OFL-1.1",
    # The Eclipse Distribution License 1.0 is the BSD-3-Clause text (SPDX).
    "edl-1": "BSD-3-Clause",
    "edl-1.0": "BSD-3-Clause",
    # The SSLeay half of OpenSSL's old dual licence.
    "ssleay": "SSLeay-standalone",
    # Not licences SPDX lists, but one name for each however it is spelt.
    "public-domain": "LicenseRef-public-domain",
    "publicdomain": "LicenseRef-public-domain",
    "pd": "LicenseRef-public-domain",
    "permissive": "LicenseRef-permissive",
}
_SPDX = {spdx_id.lower(): spdx_id for spdx_id in _AS_IS.split()} | _ALIASES

# The GNU licences by family and version, with the versions that exist.
_GNU = re.compile(r"(agpl|lgpl|gpl|gfdl)(-niv)?[-_ ]?v?(\d(?:\.\d)?)(?:\.0)?"
                  r"(\+|-or-later|-only)?")
_GNU_VERSIONS = {"gpl": ("1.0", "2.0", "3.0"), "lgpl": ("2.0", "2.1", "3.0"),
                 "agpl": ("1.0", "3.0"), "gfdl": ("1.1", "1.2", "1.3")}
_CC = re.compile(r"cc-by(-sa|-nd|-nc|-nc-sa|-nc-nd)?-([1-4])(?:\.([05]))?")

# Exceptions by the name Debian gives them (lower case, without "exception"):
# (for GPL-2 and older, for GPL-3), or one id for all.
_EXCEPTIONS: dict[str, tuple[str, str]] = {
    # Debian's "Autoconf exception" on GPL files is mostly config.guess's,
    # config.sub's and the like: SPDX's generic Autoconf exception.
    "autoconf": ("Autoconf-exception-generic", "Autoconf-exception-generic-3.0"),
    # autoconf's own data files: the exceptions named after Autoconf itself.
    "autoconf-data": ("Autoconf-exception-2.0", "Autoconf-exception-3.0"),
    "bison": ("Bison-exception-2.2",) * 2,
    "bison-2.2": ("Bison-exception-2.2",) * 2,
    "libtool": ("Libtool-exception",) * 2,
    "texinfo": ("Texinfo-exception",) * 2,
    "linux-syscall-note": ("Linux-syscall-note",) * 2,
    "llvm": ("LLVM-exception",) * 2,
    "classpath": ("Classpath-exception-2.0",) * 2,
    "font": ("Font-exception-2.0",) * 2,
    "gcc": ("GCC-exception-2.0", "GCC-exception-3.1"),
    "gcc-runtime": ("GCC-exception-2.0", "GCC-exception-3.1"),
    "gcc-runtime-3.1": ("GCC-exception-3.1",) * 2,
    "gcc-3.1": ("GCC-exception-3.1",) * 2,
    "qt-lgpl-1.1": ("Qt-LGPL-exception-1.1",) * 2,
    "ocaml-lgpl-linking": ("OCaml-LGPL-linking-exception",) * 2,
    "wxwindows": ("WxWindows-exception-3.1",) * 2,
    "u-boot": ("u-boot-exception-2.0",) * 2,
}
# A short name that spells its exception out: "GPL-3+-WITH-BISON-EXCEPTION",
# "GPL-2+-libtool-exception", "Apache-2-LLVM-exceptions".
_EXCEPTION_NAMES = "|".join(re.escape(k) for k in sorted(_EXCEPTIONS, key=len, reverse=True))
_NAMED_EXCEPTION = re.compile(rf"(.+?)(?:[-_ ]with)?[-_ ]({_EXCEPTION_NAMES})[-_ ]exceptions?",
                              re.IGNORECASE)

_TOKEN = re.compile(r"[(),]|[^\s(),]+")
_PUNCTUATION = {"(", ")", ","}
_OPERATORS = {"or": "OR", "|": "OR", "and": "AND", "&": "AND",
              # Either or both: "all of them" is the reading that is safe
              # to comply with.
              "and/or": "AND"}

# A parsed expression: an SPDX id (or "ID WITH EXCEPTION"), or an operator
# with its operands.
Node = str | tuple[str, tuple["Node", ...]]


def declared_license(copyright_text: str) -> str | None:
    """The SPDX expression for the licences of a DEP-5 copyright file's Files
    paragraphs, all of them together; None if the file is not DEP-5 or
    names no licence."""
    paragraphs = list(_paragraphs(copyright_text))
    if not paragraphs or not _is_dep5(paragraphs[0]):
        return None
    lines = [p["license"] for p in paragraphs[1:] if "files" in p and p.get("license")]
    if not lines and paragraphs[0].get("license"):
        # No Files paragraphs: the header's License: is the whole package's.
        lines = [paragraphs[0]["license"]]
    terms: list[Node] = []
    for line in lines:
        node = parse_short_names(line)
        if node is None:
            continue
        for term in node[1] if isinstance(node, tuple) and node[0] == "AND" else (node,):
            if term not in terms:
                terms.append(term)
    if not terms:
        return None
    return _render(("AND", tuple(terms)) if len(terms) > 1 else terms[0], nested=False)


def _is_dep5(header: dict[str, str]) -> bool:
    value = header.get("format") or header.get("format-specification") or ""
    return any(marker in value for marker in _FORMAT_MARKERS)


def _paragraphs(text: str) -> Iterator[dict[str, str]]:
    """Each paragraph's fields, by lower-case name: the first line of each
    value only (License:'s short names; its text follows on later lines)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields = {}
        elif line[0] in " \t#":
            continue  # a continuation line or a comment
        else:
            name, colon, value = line.partition(":")
            if colon:
                fields.setdefault(name.strip().lower(), value.strip())
    if fields:
        yield fields


def parse_short_names(line: str) -> Node | None:
    """A License: line ("GPL-2+ or Artistic, and BSD-3-clause") as a tree.

    "and" binds tighter than "or", and a comma before either separates
    groups as the format says ("A or B, and C" is "(A OR B) AND C").  A line
    that does not parse (unbalanced parentheses, "BSD (3 clause)") is read
    again as words and operators only."""
    tokens = _TOKEN.findall(line)
    parser = _Parser(tokens)
    node = parser.expression()
    if parser.pos != len(tokens):
        parser = _Parser([t for t in tokens if t not in _PUNCTUATION or t == ","])
        node = parser.expression()
    return node


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def _peek(self) -> str:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ""

    def _operator(self) -> str:
        return _OPERATORS.get(self._peek().lower(), "")

    def expression(self) -> Node | None:
        node = self._any("OR", "AND")
        while self._peek() == ",":
            self.pos += 1
            op = self._operator() or "AND"  # a bare comma lists: all of them
            if self._operator():
                self.pos += 1
            node = _join(op, [node, self._any("OR", "AND")])
        return node

    def _any(self, op: str, tighter: str) -> Node | None:
        """Operands joined by ``op``, each of them operands joined by
        ``tighter`` (or atoms when ``tighter`` is empty)."""
        operand = (lambda: self._any(tighter, "")) if tighter else self._atom
        nodes = [operand()]
        while self._operator() == op:
            self.pos += 1
            nodes.append(operand())
        return _join(op, nodes)

    def _atom(self) -> Node | None:
        if self._peek() == "(":
            self.pos += 1
            node = self.expression()
            if self._peek() == ")":
                self.pos += 1
            else:
                self.pos = len(self.tokens) + 1  # unbalanced: read it again
            return node
        words = self._words()
        exception: list[str] = []
        if self._peek().lower() == "with":
            self.pos += 1
            exception = self._words()
        return _license("-".join(words), "-".join(exception)) if words else None

    def _words(self) -> list[str]:
        words: list[str] = []
        while (word := self._peek()) and word not in _PUNCTUATION:
            if self._operator() or (word.lower() == "with" and words):
                break
            words.append(word)
            self.pos += 1
        return words


def _join(op: str, nodes: list[Node | None]) -> Node | None:
    """``op`` over the nodes that are there, flattened and deduplicated."""
    flat: list[Node] = []
    for node in nodes:
        for n in node[1] if isinstance(node, tuple) and node[0] == op else (node,):
            if n is not None and n not in flat:
                flat.append(n)
    if not flat:
        return None
    return flat[0] if len(flat) == 1 else (op, tuple(flat))


def _render(node: Node, nested: bool = True) -> str:
    if isinstance(node, str):
        return node
    op, operands = node
    inner = f" {op} ".join(_render(n) for n in operands)
    return f"({inner})" if nested else inner


def _license(name: str, exception: str = "") -> str:
    """One license: its SPDX id, with its exception if it has one."""
    if exception:
        key = re.sub(r"[-_ ]?exceptions?$", "", exception.lower())
        spdx_id = spdx_license_id(name)
        if key in _EXCEPTIONS and not spdx_id.startswith(LICENSE_REF):
            return f"{spdx_id} WITH {_exception(spdx_id, key)}"
        return license_ref(f"{name}-with-{exception}")
    if name.lower() not in _SPDX and (m := _NAMED_EXCEPTION.fullmatch(name)):
        return _license(m.group(1), m.group(2))
    return spdx_license_id(name)


def _exception(spdx_id: str, key: str) -> str:
    up_to_2, gpl_3 = _EXCEPTIONS[key]
    return gpl_3 if re.match(r"(A|L)?GPL-3", spdx_id) else up_to_2


def spdx_license_id(name: str) -> str:
    """The SPDX id for a DEP-5 short name, or LicenseRef-NAME."""
    key = name.lower().rstrip(".;:")
    if key in _SPDX:
        return _SPDX[key]
    if key in ("gpl", "lgpl"):
        # Neither licence names a version: "you may choose any version ever
        # published" (GPL-2 section 9, LGPL-2.1 section 13).
        return "GPL-1.0-or-later" if key == "gpl" else "LGPL-2.0-or-later"
    return _gnu(key) or _creative_commons(key) or license_ref(name)


def _gnu(key: str) -> str | None:
    m = _GNU.fullmatch(key)
    if not m:
        return None
    family, niv, version, later = m.groups()
    version = version if "." in version else f"{version}.0"
    if version not in _GNU_VERSIONS[family] or (niv and family != "gfdl"):
        return None
    invariants = "-no-invariants" if niv else ""
    suffix = "-or-later" if later in ("+", "-or-later") else "-only"
    return f"{family.upper()}-{version}{invariants}{suffix}"


def _creative_commons(key: str) -> str | None:
    m = _CC.fullmatch(key)
    if not m:
        return None
    kind, major, minor = m.groups()
    version = f"{major}.{minor or '0'}"
    if version not in ("1.0", "2.0", "2.5", "3.0", "4.0"):
        return None
    return f"CC-BY{(kind or '').upper()}-{version}"


def license_ref(name: str) -> str:
    """LicenseRef-NAME, with what SPDX ids cannot hold made '-'."""
    return LICENSE_REF + (re.sub(r"[^A-Za-z0-9.-]", "-", name) or "unknown")
