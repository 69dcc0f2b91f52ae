"""outputs/sbom.py: the SPDX 2.3 document of an output validates with SPDX's
own tools, lists each package once and is the same bytes every time."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vmdebootstrap.outputs.sbom import document_namespace, purl, spdx_document, write_spdx
from vmdebootstrap.root.inventory import InstalledPackage

MIRROR = "http://mirror.invalid/debian/"
OUTPUT_SHA = "ab" * 32
CREATED = 1700000000  # 2023-11-14T22:13:20Z

PACKAGES = (
    InstalledPackage("zlib1g", "1:1.2.13.dfsg-1", "amd64", "zlib", "1:1.2.13.dfsg-1",
                     "pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_amd64.deb", "11" * 32, "Zlib"),
    InstalledPackage("adduser", "3.134", "all", "adduser", "3.134",
                     "pool/main/a/adduser/adduser_3.134_all.deb", "22" * 32, "GPL-2.0-or-later"),
    InstalledPackage("libstdc++6", "12.2.0-14", "amd64", "gcc-12", "12.2.0-14",
                     "pool/main/g/gcc-12/libstdc++6_12.2.0-14_amd64.deb", "33" * 32,
                     "GPL-3.0-or-later WITH GCC-exception-3.1"),
    InstalledPackage("tzdata", "2024a-0+deb12u1", "all", "tzdata", "2024a-0+deb12u1",
                     "pool/main/t/tzdata/tzdata_2024a-0+deb12u1_all.deb", "44" * 32,
                     "LicenseRef-public-domain AND (GPL-2.0-or-later OR LicenseRef-BSD-3-Google)"),
    InstalledPackage("local-tool", "1.0~rc1", "amd64", "local-tool", "1.0~rc1", None, None, None),
    InstalledPackage("zlib1g", "1:1.2.13.dfsg-1", "i386", "zlib", "1:1.2.13.dfsg-1",
                     "pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_i386.deb", "55" * 32, "Zlib"),
    # Sanitised to the same id as libstdc++6 ('+' becomes '-'): numbered.
    InstalledPackage("libstdc--6", "1", "amd64", "x", "1", None, None, None),
)


def document(packages: tuple[InstalledPackage, ...] = PACKAGES) -> dict[str, object]:
    return spdx_document(name="live-console-amd64", output_name="live.iso",
                         output_sha256=OUTPUT_SHA, packages=packages, mirror=MIRROR,
                         distribution="bookworm", created=CREATED, tool_version="2.0.0")


def packages_of(doc: dict[str, object]) -> list[dict[str, object]]:
    packages = doc["packages"]
    assert isinstance(packages, list)
    return packages


def test_document_validates_with_spdx_tools(tmp_path: Path) -> None:
    pytest.importorskip("spdx_tools")
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    path = tmp_path / "live.spdx.json"
    write_spdx(path, document())
    parsed = parse_file(str(path))
    messages = validate_full_spdx_document(parsed)
    assert [m.validation_message for m in messages] == []
    assert len(parsed.packages) == len(PACKAGES) + 1
    assert {ref.license_id for ref in parsed.extracted_licensing_info} == {
        "LicenseRef-public-domain", "LicenseRef-BSD-3-Google"}


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    write_spdx(tmp_path / "a.json", document())
    write_spdx(tmp_path / "b.json", document(tuple(reversed(PACKAGES))))
    data = (tmp_path / "a.json").read_bytes()
    assert data == (tmp_path / "b.json").read_bytes()
    assert data.endswith(b"}\n") and not data.endswith(b"\n\n")
    assert data == (json.dumps(json.loads(data), sort_keys=True, indent=1,
                               ensure_ascii=False) + "\n").encode()


def test_every_package_once_with_unique_valid_ids() -> None:
    doc = document()
    entries = packages_of(doc)
    ids = [p["SPDXID"] for p in entries]
    assert len(ids) == len(set(ids)) == len(PACKAGES) + 1
    assert all(re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", str(i)) for i in ids)
    assert ids[:3] == ["SPDXRef-Output", "SPDXRef-Package-deb-adduser-all",
                       "SPDXRef-Package-deb-libstdc--6-amd64"]
    assert "SPDXRef-Package-deb-libstdc--6-amd64-2" in ids
    names = [(p["name"], p["versionInfo"]) for p in entries[1:]]
    assert sorted(names) == sorted((p.name, p.version) for p in PACKAGES)
    contained = [r["relatedSpdxElement"] for r in doc["relationships"]  # type: ignore[attr-defined]
                 if r["relationshipType"] == "CONTAINS"]
    assert contained == ids[1:]


def test_document_fields() -> None:
    doc = document()
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["dataLicense"] == "CC0-1.0"
    assert doc["creationInfo"] == {"created": "2023-11-14T22:13:20Z",
                                   "creators": ["Tool: vmdebootstrap-2.0.0"]}
    assert doc["documentNamespace"] == document_namespace(OUTPUT_SHA, "live.iso")
    assert str(doc["documentNamespace"]).startswith("urn:uuid:")
    assert document_namespace(OUTPUT_SHA, "other.iso") != doc["documentNamespace"]
    assert doc["relationships"][0] == {  # type: ignore[index]
        "spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Output"}
    output, *rest = packages_of(doc)
    assert output["checksums"] == [{"algorithm": "SHA256", "checksumValue": OUTPUT_SHA}]
    assert output["primaryPackagePurpose"] == "OPERATING-SYSTEM"
    assert output["filesAnalyzed"] is False
    by_id = {p["SPDXID"]: p for p in rest}
    zlib = by_id["SPDXRef-Package-deb-zlib1g-amd64"]
    assert zlib["downloadLocation"] == \
        "http://mirror.invalid/debian/pool/main/z/zlib/zlib1g_1.2.13.dfsg-1_amd64.deb"
    assert zlib["checksums"] == [{"algorithm": "SHA256", "checksumValue": "11" * 32}]
    assert zlib["licenseDeclared"] == "Zlib"
    assert zlib["supplier"] == "Organization: Debian"
    assert zlib["sourceInfo"] == "built package from: zlib 1:1.2.13.dfsg-1"
    assert zlib["externalRefs"] == [{
        "referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
        "referenceLocator": "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=bookworm"}]
    local = by_id["SPDXRef-Package-deb-local-tool-amd64"]
    assert local["downloadLocation"] == "NOASSERTION"
    assert local["licenseDeclared"] == "NOASSERTION"
    assert local["supplier"] == "NOASSERTION"
    assert "checksums" not in local


def test_extracted_licences_for_every_license_ref() -> None:
    infos = document()["hasExtractedLicensingInfos"]
    assert [i["licenseId"] for i in infos] == [  # type: ignore[attr-defined]
        "LicenseRef-BSD-3-Google", "LicenseRef-public-domain"]
    assert infos[1]["name"] == "public-domain"  # type: ignore[index]
    assert "Debian's machine-readable copyright" in infos[1]["extractedText"]  # type: ignore[index]
    assert "hasExtractedLicensingInfos" not in document(PACKAGES[:2])


def test_purl_encodes_as_the_spec_says() -> None:
    pkg = InstalledPackage("libstdc++6", "2:12.2.0-14+deb12u1~1", "amd64", "gcc-12", "x",
                           None, None, None)
    assert purl(pkg, "bookworm") == (
        "pkg:deb/debian/libstdc%2B%2B6@2%3A12.2.0-14%2Bdeb12u1~1?arch=amd64&distro=bookworm")
