"""What an output contains, as an SPDX 2.3 JSON document (a software bill of materials).

One package for the output file itself, one per Debian package installed in
it, each with its version, source, mirror file and checksum, a purl and the
licence its copyright file declares.  The same output gives the same bytes:
no random namespace, no clock but the ``created`` it is given, every list in
a fixed order.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Sequence
from pathlib import Path

from vmdebootstrap.root.inventory import InstalledPackage
from vmdebootstrap.root.licenses import LICENSE_REF

NOASSERTION = "NOASSERTION"
OUTPUT_ID = "SPDXRef-Output"
DOCUMENT_ID = "SPDXRef-DOCUMENT"
# The namespace of the documents' uuid5s: a fixed value, so that the same
# output always gets the same documentNamespace.
_NAMESPACE = uuid.UUID("6f0f3c1e-6b5e-5d0a-9a49-766d6465626f")
_LICENSE_REF = re.compile(re.escape(LICENSE_REF) + r"[A-Za-z0-9.-]+")


# The SBOM of a live output's squashfs, in its squash directory and the
# ISO's /live.
SQUASH_SBOM = "filesystem.spdx.json"


def spdx_document(*, name: str, output_name: str, output_sha256: str,
                  packages: Sequence[InstalledPackage], mirror: str, distribution: str,
                  created: int, tool_version: str) -> dict[str, object]:
    """The document for the output ``output_name`` (whose SHA256 is
    ``output_sha256``) built from ``mirror``'s ``distribution``; ``created``
    is in seconds since the epoch (the build's SOURCE_DATE_EPOCH when it is
    reproducible)."""
    ordered = sorted(packages, key=lambda p: (p.name, p.architecture, p.version))
    ids = _package_ids(ordered)
    output = {
        "SPDXID": OUTPUT_ID,
        "name": output_name,
        "checksums": [{"algorithm": "SHA256", "checksumValue": output_sha256}],
        "copyrightText": NOASSERTION,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "supplier": NOASSERTION,
    }
    entries = [_package(p, spdx_id, mirror, distribution)
               for p, spdx_id in zip(ordered, ids, strict=True)]
    relationships = [_relationship(DOCUMENT_ID, "DESCRIBES", OUTPUT_ID)]
    relationships += [_relationship(OUTPUT_ID, "CONTAINS", spdx_id) for spdx_id in ids]
    document: dict[str, object] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": DOCUMENT_ID,
        "name": name,
        "documentNamespace": document_namespace(output_sha256, output_name),
        "creationInfo": {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
            "creators": [f"Tool: vmdebootstrap-{tool_version}"],
        },
        "documentDescribes": [OUTPUT_ID],
        "packages": [output, *entries],
        "relationships": relationships,
    }
    extracted = _extracted_licenses(ordered)
    if extracted:
        document["hasExtractedLicensingInfos"] = extracted
    return document


def write_spdx(path: Path, document: dict[str, object]) -> None:
    """The document as JSON: sorted keys and a fixed layout, so that the
    same document is always the same bytes."""
    text = json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False)
    path.write_bytes(text.encode("utf-8") + b"\n")


def document_namespace(output_sha256: str, output_name: str) -> str:
    """A URI naming this document and no other: derived from the output's
    checksum and name, so a rebuild that gives the same bytes names it
    alike, and nothing in it points at a host of ours."""
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{output_sha256}/{output_name}')}"


def purl(package: InstalledPackage, distribution: str) -> str:
    """The package URL of a Debian package: every part percent-encoded as the
    purl specification asks (an epoch's ':' is %3A, '+' is %2B)."""
    def enc(text: str) -> str:
        return urllib.parse.quote(text, safe="")
    return (f"pkg:deb/debian/{enc(package.name)}@{enc(package.version)}"
            f"?arch={enc(package.architecture)}&distro={enc(distribution)}")


def _package_ids(packages: Sequence[InstalledPackage]) -> list[str]:
    """SPDXRef-Package-deb-NAME-ARCH, with what SPDX ids cannot hold ('+',
    ':', '_') made '-'; a name that then clashes with an earlier one gets a
    number, so that every id is unique (the packages come sorted, so the
    numbering is stable)."""
    ids: list[str] = []
    seen: set[str] = set()
    for p in packages:
        base = "SPDXRef-Package-deb-" + re.sub(r"[^A-Za-z0-9.-]", "-",
                                               f"{p.name}-{p.architecture}")
        spdx_id, n = base, 1
        while spdx_id in seen:
            n += 1
            spdx_id = f"{base}-{n}"
        seen.add(spdx_id)
        ids.append(spdx_id)
    return ids


def _package(p: InstalledPackage, spdx_id: str, mirror: str,
             distribution: str) -> dict[str, object]:
    entry: dict[str, object] = {
        "SPDXID": spdx_id,
        "name": p.name,
        "versionInfo": p.version,
        # Only what came from the mirror is known to be Debian's.
        "supplier": "Organization: Debian" if p.filename else NOASSERTION,
        "downloadLocation": (f"{mirror.rstrip('/')}/{p.filename}" if p.filename
                             else NOASSERTION),
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": p.license or NOASSERTION,
        "copyrightText": NOASSERTION,
        "sourceInfo": f"built package from: {p.source} {p.source_version}",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl(p, distribution),
        }],
    }
    if p.sha256:
        entry["checksums"] = [{"algorithm": "SHA256", "checksumValue": p.sha256}]
    return entry


def _relationship(element: str, kind: str, related: str) -> dict[str, str]:
    return {"spdxElementId": element, "relationshipType": kind,
            "relatedSpdxElement": related}


def _extracted_licenses(packages: Sequence[InstalledPackage]) -> list[dict[str, str]]:
    """Every LicenseRef the packages use: SPDX asks that each be described."""
    refs = sorted({ref for p in packages for ref in _LICENSE_REF.findall(p.license or "")})
    return [{
        "licenseId": ref,
        "name": ref[len(LICENSE_REF):],
        "extractedText": (f"The licence named {ref[len(LICENSE_REF):]!r} in Debian's "
                          "machine-readable copyright files (debian/copyright, "
                          "copyright-format 1.0); its text is in the package's "
                          "/usr/share/doc/PACKAGE/copyright."),
    } for ref in refs]
