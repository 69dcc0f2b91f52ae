"""ISO layout, menus and installer verification without root or network."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

from tests.fakes import RecordingRunner
from vmdebootstrap.errors import BuildError, NoSpace, UsageError
from vmdebootstrap.host import helper_apt
from vmdebootstrap.host.publish import staged_file
from vmdebootstrap.host.run import Result
from vmdebootstrap.outputs import efiboot, installer, iso, isomenu, signed

# ---- validation -------------------------------------------------------------------------


@pytest.mark.parametrize("volid", ["DEBIAN_LIVE", "A", "X" * 32, "D12_AMD64"])
def test_good_volume_ids(volid: str) -> None:
    assert iso.validate_volume_id(volid) is None


@pytest.mark.parametrize("volid", ["", "X" * 33, "debian", "DEBIAN LIVE", "DEB-LIVE", "É"])
def test_bad_volume_ids(volid: str) -> None:
    problem = iso.validate_volume_id(volid)
    assert problem and "volume id" in problem


def test_validate_spec_collects_every_problem(tmp_path: Path) -> None:
    spec = iso.IsoSpec(arch="sparc", distribution="Bookworm", volume_id="bad id",
                       kernel_append=("ok=1", "two words"), preseed=tmp_path / "missing.cfg",
                       installer=True)
    problems = iso.validate_spec(spec)
    text = "\n".join(problems)
    assert "sparc" in text
    assert "codename" in text
    assert "volume id" in text
    assert "two words" in text
    assert "missing.cfg" in text
    assert "mirror" in text
    assert "ok=1" not in text


def test_preseed_needs_installer(tmp_path: Path) -> None:
    preseed = tmp_path / "p.cfg"
    preseed.write_text("d-i foo string bar\n")
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", preseed=preseed)
    assert any("--installer" in p for p in iso.validate_spec(spec))


def test_valid_spec_has_no_problems() -> None:
    assert iso.validate_spec(iso.IsoSpec(arch="amd64", distribution="bookworm")) == []


def test_build_iso_refuses_bad_input_before_writing(tmp_path: Path) -> None:
    runner = RecordingRunner()
    out = tmp_path / "out.iso"
    with pytest.raises(UsageError) as exc:
        iso.build_iso(runner, iso.IsoSpec(arch="amd64", distribution="bookworm"),
                      tmp_path / "nosquash", out, tmp_path / "work")
    assert "filesystem.squashfs" in str(exc.value)
    assert runner.calls == []
    assert not out.exists()


def test_missing_requirements_names_packages(tmp_path: Path) -> None:
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", installer=True)
    missing = iso.missing_requirements(spec, grub_lib=tmp_path, isolinux_dir=tmp_path,
                                       bios_modules=tmp_path, which=lambda _n: None)
    text = " ".join(missing)
    for pkg in ("xorriso", "dosfstools", "mtools", "grub-efi-amd64-bin", "isolinux",
                "syslinux-common", "gpgv", "dpkg-deb (dpkg)"):
        assert pkg in text
    assert "grub-efi-ia32-bin" not in text  # optional for amd64
    assert "apt-get" not in text  # no mirror: nothing is fetched with apt
    assert "grub-mkimage" not in text  # no modules to build an image of


def test_grub_the_host_lacks_comes_from_the_mirror(tmp_path: Path) -> None:
    """arm64's grub-efi-arm64-bin exists only for arm64: with a mirror the
    ISO takes Debian's CD grub from it, so the host needs apt, not the package."""
    def missing(arch: str, grub_lib: Path, mirror: str | None = "http://m") -> list[str]:
        return iso.missing_requirements(iso.IsoSpec(arch=arch, distribution="bookworm",
                                                     mirror=mirror),
                                        grub_lib=grub_lib, isolinux_dir=tmp_path,
                                        bios_modules=tmp_path, which=lambda _n: None)
    arm64 = missing("arm64", tmp_path)
    assert "apt-get (apt)" in arm64 and "dpkg-deb (dpkg)" in arm64
    assert not any("grub" in m or "isolinux" in m for m in arm64), arm64
    assert any("grub-efi-arm64-bin" in m for m in missing("arm64", tmp_path, mirror=None))
    host = tmp_path / "grub"
    for fmt in ("x86_64-efi", "i386-efi"):
        (host / fmt).mkdir(parents=True)
        (host / fmt / "linux.mod").write_bytes(b"")
    amd64 = missing("amd64", host)
    assert "grub-mkimage (grub-common)" in amd64 and "apt-get (apt)" not in amd64
    signed = iso.missing_requirements(
        iso.IsoSpec(arch="amd64", distribution="bookworm", secure_boot=True, mirror="http://m"),
        grub_lib=tmp_path, isolinux_dir=tmp_path, bios_modules=tmp_path, which=lambda _n: None)
    assert "apt-get (apt)" in signed and "dpkg-deb (dpkg)" in signed


def test_secure_boot_spec_needs_a_signed_arch_and_a_mirror() -> None:
    assert iso.validate_spec(iso.IsoSpec(arch="amd64", distribution="bookworm",
                                         secure_boot=True, mirror="http://m")) == []
    assert iso.validate_spec(iso.IsoSpec(arch="i386", distribution="bookworm",
                                         secure_boot=True, mirror="http://m")) == [
        "Secure Boot ISOs are not supported for i386 (only amd64, arm64)"]
    assert iso.validate_spec(iso.IsoSpec(arch="amd64", distribution="bookworm",
                                         secure_boot=True)) == [
        "Secure Boot needs a mirror to fetch the signed boot loaders from"]


# ---- menus ------------------------------------------------------------------------------


def test_live_entries_default() -> None:
    entries = isomenu.menu_entries(arch="amd64")
    assert [e.ident for e in entries] == ["live", "failsafe", "verify"]
    live, failsafe, _verify = entries
    assert live.title == "Live system (amd64)"
    assert live.default
    assert " ".join(live.append) == "boot=live components quiet splash"
    assert live.kernel == "/live/vmlinuz" and live.initrd == "/live/initrd.img"
    assert failsafe.append[:2] == ("boot=live", "components")
    for word in ("memtest", "noapic", "nosmp", "nosplash", "vga=788"):
        assert word in failsafe.append


def test_serial_console_drops_quiet_splash_and_adds_consoles() -> None:
    live, failsafe, _verify = isomenu.menu_entries(arch="amd64", serial_console=True,
                                                   kernel_append=("live-config.hostname=x",))
    assert "quiet" not in live.append and "splash" not in live.append
    assert live.append[-3:] == ("console=tty0", "console=ttyS0,115200n8",
                                "live-config.hostname=x")
    assert "console=ttyS0,115200n8" in failsafe.append
    assert failsafe.append[-1] == "live-config.hostname=x"


def test_installer_entries_with_gtk() -> None:
    entries = isomenu.menu_entries(arch="amd64", installer_dir="install.amd", installer_gtk=True)
    install, gui = entries[3:]
    assert (install.title, gui.title) == ("Install", "Graphical install")
    assert install.kernel == "/install.amd/vmlinuz"
    assert gui.initrd == "/install.amd/gtk/initrd.gz"
    # A preseed is inside the initrds: no entry names one, none starts d-i in auto mode.
    assert install.append == gui.append == ("vga=788", "---", "quiet")
    assert (install.hotkey, gui.hotkey) == ("i", "g")
    assert (install.isolinux_label(), gui.isolinux_label()) == ("^Install", "^Graphical install")
    assert entries[0].isolinux_label() == entries[0].title  # no hotkey, no ^


def test_installer_entries_without_gtk() -> None:
    entries = isomenu.menu_entries(arch="i386", installer_dir="install.386")
    assert [e.ident for e in entries] == ["live", "failsafe", "verify", "install"]
    assert entries[3].kernel == "/install.386/vmlinuz"


def test_installer_entries_serial_console() -> None:
    install = isomenu.menu_entries(arch="arm64", installer_dir="install.a64",
                                   serial_console=True, serial_tty="ttyAMA0")[3]
    assert install.append == ("vga=788", "console=ttyAMA0,115200n8", "---", "quiet")


def test_isolinux_cfg_plain() -> None:
    cfg = isomenu.isolinux_cfg(isomenu.menu_entries(arch="amd64"), title="My live",
                               serial_console=False, splash=False)
    assert "SERIAL" not in cfg
    assert "UI menu.c32" in cfg
    assert "DEFAULT live" in cfg
    assert "MENU TITLE My live" in cfg
    assert "  APPEND boot=live components quiet splash\n" in cfg
    assert "  LINUX /live/vmlinuz" in cfg and "  INITRD /live/initrd.img" in cfg


def test_isolinux_cfg_serial_and_splash() -> None:
    cfg = isomenu.isolinux_cfg(isomenu.menu_entries(arch="amd64", serial_console=True),
                               title="T", serial_console=True, splash=True)
    assert cfg.startswith("SERIAL 0 115200\n")
    assert "UI vesamenu.c32" in cfg
    assert "MENU BACKGROUND splash.png" in cfg
    assert "console=ttyS0,115200n8" in cfg


def test_grub_cfg_serial() -> None:
    cfg = isomenu.grub_cfg(isomenu.menu_entries(arch="amd64", serial_console=True),
                           title="T", serial_console=True, splash=False, font=False)
    assert "serial --unit=0 --speed=115200\n" in cfg
    assert "terminal_input console serial\n" in cfg
    assert "terminal_output console serial\n" in cfg
    assert "menuentry 'Live system (amd64)' --id live {" in cfg
    assert ("  linux /live/vmlinuz boot=live components console=tty0 "
            "console=ttyS0,115200n8\n") in cfg
    assert "  initrd /live/initrd.img\n" in cfg
    assert "set default=0" in cfg


def test_grub_cfg_without_serial_has_no_serial_lines() -> None:
    cfg = isomenu.grub_cfg(isomenu.menu_entries(arch="amd64"), title="T",
                           serial_console=False, splash=False, font=False)
    assert "serial" not in cfg
    assert "quiet splash" in cfg


def test_grub_cfg_splash_with_serial() -> None:
    cfg = isomenu.grub_cfg(isomenu.menu_entries(arch="amd64"), title="T",
                           serial_console=True, splash=True, font=True)
    assert "background_image /boot/grub/splash.png" in cfg
    assert "terminal_output gfxterm serial" in cfg


def test_grub_title_quoting() -> None:
    entry = isomenu.MenuEntry("x", "it's", "/k", "/i", ("a",))
    cfg = isomenu.grub_cfg([entry], title="T", serial_console=False, splash=False, font=False)
    assert "menuentry 'it'\\''s' --id x {" in cfg


@pytest.mark.parametrize("param", ["a b", "x=$y", "q\"", "semi;colon", "back\\slash", ""])
def test_bad_kernel_params(param: str) -> None:
    assert isomenu.validate_kernel_param(param)


@pytest.mark.parametrize("param", ["quiet", "console=ttyS0,115200n8", "live-config.x=a/b"])
def test_good_kernel_params(param: str) -> None:
    assert isomenu.validate_kernel_param(param) is None


def test_efi_search_cfg() -> None:
    cfg = isomenu.efi_search_cfg("/.disk/id/abc")
    assert "search --no-floppy --set=root --file /.disk/id/abc" in cfg
    assert "configfile ($root)/boot/grub/grub.cfg" in cfg


def test_disk_info() -> None:
    assert isomenu.disk_info("bookworm", "amd64", "20240101-00:00") == \
        "Debian GNU/Linux bookworm amd64 live 20240101-00:00"


def test_marker_is_stable_for_reproducible_builds() -> None:
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", source_date_epoch=1700000000)
    assert iso.iso_marker(spec) == iso.iso_marker(spec)
    assert iso.iso_marker(spec).startswith("/.disk/id/")
    plain = iso.IsoSpec(arch="amd64", distribution="bookworm")
    assert iso.iso_marker(plain) != iso.iso_marker(plain)


# ---- argv builders ----------------------------------------------------------------------


def test_grub_modules_filtered_by_availability() -> None:
    mods = efiboot.grub_modules({"linux", "iso9660", "fat", "normal", "search", "efi_uga"})
    assert mods == ["fat", "iso9660", "normal", "linux", "search", "efi_uga"]


def test_grub_mkimage_argv() -> None:
    argv = efiboot.grub_mkimage_argv("x86_64-efi", Path("/w/bootx64.efi"), ["fat", "linux"],
                                 grub_lib=Path("/usr/lib/grub"))
    assert argv == ["grub-mkimage", "--directory", "/usr/lib/grub/x86_64-efi",
                    "--format", "x86_64-efi", "--prefix", "/EFI/boot",
                    "--output", "/w/bootx64.efi", "fat", "linux"]


def test_efi_image_argvs() -> None:
    files = {"EFI/boot/bootx64.efi": Path("/s/x.efi"), "EFI/boot/grub.cfg": Path("/s/g.cfg")}
    argvs = efiboot.efi_image_argvs(Path("/w/efi.img"), 2048, files, "1234ABCD", reproducible=True)
    assert argvs[0] == ["mkfs.vfat", "-C", "-n", "EFIBOOT", "-i", "1234ABCD", "--invariant",
                        "/w/efi.img", "2048"]
    assert argvs[1] == ["mmd", "-i", "/w/efi.img", "::/EFI"]
    assert argvs[2] == ["mmd", "-i", "/w/efi.img", "::/EFI/boot"]
    assert argvs[3] == ["mcopy", "-m", "-i", "/w/efi.img", "/s/x.efi", "::/EFI/boot/bootx64.efi"]
    assert argvs[4][-1] == "::/EFI/boot/grub.cfg"
    assert all("mount" not in a[0] and "losetup" not in a[0] for a in argvs)
    assert "--invariant" not in efiboot.efi_image_argvs(Path("/i"), 2048, files, "1", False)[0]


def test_efi_image_size() -> None:
    assert efiboot.efi_image_size_kib(0) == 1440
    size = efiboot.efi_image_size_kib(3 * 1024 * 1024)
    assert size * 1024 > 3 * 1024 * 1024 and size % 64 == 0


def test_efi_serial() -> None:
    assert efiboot.efi_serial(0x1_2345_6789) == "23456789"
    assert len(efiboot.efi_serial(None)) == 8


def test_xorriso_argv_hybrid_bios_uefi() -> None:
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", volume_id="MY_LIVE")
    argv = iso.xorriso_argv(spec=spec, root=Path("/w/root"),
                            grafts={"live/vmlinuz": Path("/sq/vmlinuz")},
                            output=Path("/o/x.iso"), bios=True,
                            isolinux_dir=Path("/usr/lib/ISOLINUX"))
    line = " ".join(argv)
    assert argv[:3] == ["xorriso", "-as", "mkisofs"]
    assert "-iso-level 3" in line and "-full-iso9660-filenames" in line
    assert "-V MY_LIVE" in line
    assert "-isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin" in line
    assert ("-b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 "
            "-boot-info-table -eltorito-alt-boot -e boot/grub/efi.img -no-emul-boot "
            "-isohybrid-gpt-basdat") in line
    assert argv[-2:] == ["/=/w/root", "live/vmlinuz=/sq/vmlinuz"]
    assert "--modification-date" not in line


def test_xorriso_argv_reproducible() -> None:
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", source_date_epoch=1700000000)
    argv = iso.xorriso_argv(spec=spec, root=Path("/r"), grafts={}, output=Path("/o"), bios=True)
    assert "--modification-date=2023111422132000" in argv
    i = argv.index("--set_all_file_dates")
    assert argv[i + 1] == "=1700000000"
    assert iso.xorriso_env(1700000000) == {"SOURCE_DATE_EPOCH": "1700000000"}
    assert iso.xorriso_env(None) == {}


def test_xorriso_argv_uefi_only_for_arm64() -> None:
    spec = iso.IsoSpec(arch="arm64", distribution="bookworm")
    argv = iso.xorriso_argv(spec=spec, root=Path("/r"), grafts={}, output=Path("/o"), bios=False)
    assert "-isohybrid-mbr" not in argv and "-b" not in argv
    i = argv.index("-append_partition")
    assert argv[i:i + 4] == ["-append_partition", "2", "0xef", "/r/boot/grub/efi.img"]


def test_graft_escape() -> None:
    assert iso.graft_escape("/a=b\\c") == "/a\\=b\\\\c"


# ---- El Torito check --------------------------------------------------------------------

REPORT = """\
El Torito catalog  : 44  1
El Torito cat path : /isolinux/boot.cat
El Torito images   :   N  Pltf  B   Emul  Ld_seg  Hdpt  Ldsiz         LBA
El Torito boot img :   1  BIOS  y   none  0x0000  0x00      4        1133
El Torito boot img :   2  UEFI  y   none  0x0000  0x00   4352          45
El Torito img path :   1  /isolinux/isolinux.bin
El Torito img path :   2  /boot/grub/efi.img
"""


def test_parse_el_torito() -> None:
    assert iso.parse_el_torito(REPORT) == iso.ElTorito(bios=True, efi=True)
    only_efi = "\n".join(line for line in REPORT.splitlines() if "BIOS" not in line)
    assert iso.parse_el_torito(only_efi) == iso.ElTorito(bios=False, efi=True)
    assert iso.parse_el_torito("") == iso.ElTorito(bios=False, efi=False)


def _fake_iso(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "x.iso"
    with path.open("wb") as f:
        f.truncate(size)
    return path


def test_check_iso_accepts_hybrid(tmp_path: Path) -> None:
    runner = RecordingRunner({"xorriso": REPORT})
    iso.check_iso(runner, _fake_iso(tmp_path, 32 << 20), "amd64")
    assert runner.calls[0][:2] == ["xorriso", "-indev"]
    assert runner.calls[0][-2:] == ["-report_el_torito", "plain"]


def test_check_iso_needs_bios_entry_on_x86(tmp_path: Path) -> None:
    report = REPORT.replace("BIOS", "Mac ")
    with pytest.raises(BuildError, match="BIOS"):
        iso.check_iso(RecordingRunner({"xorriso": report}), _fake_iso(tmp_path, 32 << 20), "i386")
    iso.check_iso(RecordingRunner({"xorriso": report}), _fake_iso(tmp_path, 32 << 20), "arm64")


def test_check_iso_needs_efi_entry(tmp_path: Path) -> None:
    report = REPORT.replace("UEFI", "Mac ")
    with pytest.raises(BuildError, match="EFI"):
        iso.check_iso(RecordingRunner({"xorriso": report}), _fake_iso(tmp_path, 32 << 20), "amd64")


def test_check_iso_size(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="size"):
        iso.check_iso(RecordingRunner({"xorriso": REPORT}), _fake_iso(tmp_path, 4096), "amd64")
    with pytest.raises(BuildError, match="does not exist"):
        iso.check_iso(RecordingRunner(), tmp_path / "none.iso", "amd64")


# ---- the whole build with faked tools -----------------------------------------------------

class FakeTools(RecordingRunner):
    """Creates what each tool would create; snapshots the ISO tree at xorriso
    time.  apt-get downloads a .deb of each package but those in ``lacking``,
    dpkg-deb unpacks Debian's signed loaders."""

    def __init__(self, fail_xorriso: bool = False, lacking: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.fail_xorriso = fail_xorriso
        self.lacking = lacking
        self.tree: dict[str, str] = {}
        self.efi: dict[str, bytes] = {}

    def run(self, argv, **kw):  # type: ignore[no-untyped-def]
        result = super().run(argv, **kw)
        args = self.calls[-1]
        if args[0] == "apt-get" and "download" in args:
            wanted = args[args.index("download") + 1:]
            if any(p in self.lacking for p in wanted):
                return Result(100, "", [f"E: Unable to locate package {p}"
                                        for p in wanted if p in self.lacking])
            for pkg in wanted:
                (Path(kw["cwd"]) / f"{pkg}_1.0_amd64.deb").write_bytes(b"!<arch>")
        elif args[0] == "dpkg-deb":
            for src, name in signed.SIGNED_BOOT["amd64"].files:
                (Path(args[-1]) / src).parent.mkdir(parents=True, exist_ok=True)
                (Path(args[-1]) / src).write_bytes(b"MZ signed " + name.encode())
        elif args[0] == "grub-mkimage":
            Path(args[args.index("--output") + 1]).write_bytes(b"MZ" + b"\0" * 1000)
        elif args[0] == "mkfs.vfat":
            Path(args[-2]).write_bytes(b"\0" * 1024)
        elif args[0] == "xorriso":
            root = Path(next(a for a in args if a.startswith("/=")).removeprefix("/="))
            self.tree = {str(p.relative_to(root)): (p.read_text(errors="replace")
                                                    if p.suffix in (".cfg", "") else "")
                         for p in root.rglob("*") if p.is_file()}
            self.efi = {p.name: p.read_bytes() for p in (root / "EFI/boot").iterdir()}
            out = Path(args[args.index("-o") + 1])
            out.write_bytes(b"partial")
            if self.fail_xorriso:
                raise BuildError("xorriso failed")
        return result


needs_host_boot_files = pytest.mark.skipif(
    bool(iso.missing_requirements(iso.IsoSpec(arch="amd64", distribution="bookworm"))),
    reason="isolinux/syslinux-common/grub-efi-amd64-bin/xorriso/mtools not installed")


def _squash(tmp_path: Path) -> Path:
    squash = tmp_path / "squash"
    squash.mkdir()
    for name in ("filesystem.squashfs", "vmlinuz", "initrd.img", "filesystem.packages"):
        (squash / name).write_bytes(b"x")
    return squash


@needs_host_boot_files
def test_build_iso_layout_with_fake_tools(tmp_path: Path) -> None:
    runner = FakeTools()
    out = tmp_path / "out" / "live.iso"
    out.parent.mkdir()
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", serial_console=True,
                       source_date_epoch=1700000000)
    iso.build_iso(runner, spec, _squash(tmp_path), out, tmp_path / "work")
    assert out.read_bytes() == b"partial"
    assert [p.name for p in out.parent.iterdir()] == ["live.iso"]
    tree = runner.tree
    assert tree[".disk/info"] == "Debian GNU/Linux bookworm amd64 live 20231114-22:13"
    assert any(k.startswith(".disk/id/") for k in tree)
    for name in ("isolinux/isolinux.bin", "isolinux/ldlinux.c32", "isolinux/menu.c32",
                 "isolinux/libcom32.c32", "isolinux/libutil.c32", "boot/grub/efi.img",
                 "EFI/boot/bootx64.efi"):
        assert name in tree
    assert tree["isolinux/isolinux.cfg"].startswith("SERIAL 0 115200")
    assert "terminal_output console serial" in tree["boot/grub/grub.cfg"]
    marker = next(k for k in tree if k.startswith(".disk/id/"))
    assert f"--file /{marker}" in tree["EFI/boot/grub.cfg"]
    xorriso = runner.calls[-1]
    assert f"live/filesystem.squashfs={tmp_path}/squash/filesystem.squashfs" in xorriso
    assert any(a.startswith("live/filesystem.packages=") for a in xorriso)
    mcopies = [c[-1] for c in runner.calls if c[0] == "mcopy"]
    assert "::/EFI/boot/bootx64.efi" in mcopies and "::/EFI/boot/grub.cfg" in mcopies
    assert not list((tmp_path / "work").iterdir())  # scratch removed
    # Secure Boot off: our own GRUB, nothing fetched
    assert not any(c[0] == "apt-get" for c in runner.calls)
    assert "EFI/boot/grubx64.efi" not in tree and "EFI/boot/mmx64.efi" not in tree


@pytest.fixture
def archive_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    key = tmp_path / "debian-archive-keyring.gpg"
    key.write_bytes(b"\x99key")
    monkeypatch.setattr(helper_apt, "ARCHIVE_KEYRING", key)
    return key


@needs_host_boot_files
def test_build_iso_secure_boot_layout_with_fake_tools(tmp_path: Path,
                                                      archive_keyring: Path) -> None:
    runner = FakeTools()
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", serial_console=True,
                       source_date_epoch=1700000000, secure_boot=True,
                       mirror="http://mirror.example/debian")
    iso.build_iso(runner, spec, _squash(tmp_path), tmp_path / "l.iso", tmp_path / "work")
    # shim is the removable-media loader; it starts grubx64.efi beside it
    assert runner.efi["bootx64.efi"] == b"MZ signed bootx64.efi"
    assert runner.efi["grubx64.efi"] == b"MZ signed grubx64.efi"
    assert runner.efi["mmx64.efi"] == b"MZ signed mmx64.efi"
    downloads = [c for c in runner.calls if c[0] == "apt-get" and "download" in c]
    assert downloads[0][-3:] == ["shim-signed", "shim-helpers-amd64-signed",
                                 "grub-efi-amd64-signed"]
    assert not any("x86_64-efi" in c for c in runner.calls if c[0] == "grub-mkimage")
    mcopies = [c[-1] for c in runner.calls if c[0] == "mcopy"]
    for name in ("bootx64.efi", "grubx64.efi", "mmx64.efi", "grub.cfg"):
        assert f"::/EFI/boot/{name}" in mcopies
    assert "terminal_output console serial" in runner.tree["boot/grub/grub.cfg"]
    assert not list((tmp_path / "work").iterdir())  # the private apt went with the scratch


@needs_host_boot_files
def test_build_iso_goes_on_unsigned_when_the_suite_lacks_the_packages(
        tmp_path: Path, archive_keyring: Path, caplog: pytest.LogCaptureFixture) -> None:
    runner = FakeTools(lacking=("shim-signed", "shim-helpers-amd64-signed"))
    spec = iso.IsoSpec(arch="amd64", distribution="stretch", secure_boot=True,
                       mirror="http://mirror.example/debian")
    iso.build_iso(runner, spec, _squash(tmp_path), tmp_path / "l.iso", tmp_path / "work")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == ["Secure Boot: stretch on the build's mirror has no shim-signed, "
                        "shim-helpers-amd64-signed for amd64; building the ISO without "
                        "Secure Boot (--no-secure-boot skips this look-up)"]
    assert any("x86_64-efi" in c for c in runner.calls if c[0] == "grub-mkimage")
    assert runner.efi["bootx64.efi"].startswith(b"MZ\0")
    assert "grubx64.efi" not in runner.efi and "mmx64.efi" not in runner.efi


def test_signed_packages_without_the_loaders_fail(tmp_path: Path,
                                                  archive_keyring: Path) -> None:
    class Empty(FakeTools):
        def run(self, argv, **kw):  # type: ignore[no-untyped-def]
            if argv[0] == "dpkg-deb":
                return RecordingRunner.run(self, argv, **kw)  # unpacks nothing
            return super().run(argv, **kw)

    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", secure_boot=True,
                       mirror="http://mirror.example/debian")
    with pytest.raises(BuildError, match=r"shimx64\.efi\.signed"):
        signed.fetch_signed_boot(Empty(), spec, tmp_path / "signed")


class InstallerTools(FakeTools):
    """FakeTools that also keeps the installer's initrds as xorriso would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.initrds: dict[str, bytes] = {}

    def run(self, argv, **kw):  # type: ignore[no-untyped-def]
        if os.fspath(argv[0]) == "xorriso":
            root = Path(next(os.fspath(a) for a in argv if os.fspath(a).startswith("/="))[2:])
            self.initrds = {str(p.relative_to(root)): p.read_bytes()
                            for p in root.rglob("initrd.gz")}
        return super().run(argv, **kw)


@pytest.mark.parametrize("gtk", [False, True])
def test_build_iso_with_installer_and_preseed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              gtk: bool) -> None:
    preseed = tmp_path / "preseed.cfg"
    preseed.write_text("d-i x string y\n")
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", installer=True, preseed=preseed,
                       mirror="http://mirror.example/debian", source_date_epoch=1700000000)
    if iso.missing_requirements(spec):
        pytest.skip(f"not installed: {iso.missing_requirements(spec)}")

    def fake_fetch(runner, spec, dest, scratch, **kw):  # type: ignore[no-untyped-def]
        flavours = [dest, dest / "gtk"] if gtk else [dest]
        for d in flavours:
            d.mkdir(parents=True)
            (d / "vmlinuz").write_bytes(b"kernel")
            (d / "initrd.gz").write_bytes(b"initrd")
        return installer.Installer("debian-installer-12-netboot-amd64", "1",
                                   tuple(d / "initrd.gz" for d in flavours), gtk)

    monkeypatch.setattr(installer, "fetch_installer", fake_fetch)
    runner = InstallerTools()
    iso.build_iso(runner, spec, _squash(tmp_path), tmp_path / "l.iso", tmp_path / "work")
    grub = runner.tree["boot/grub/grub.cfg"]
    assert "menuentry 'Install' --id install --hotkey=i {" in grub
    assert ("menuentry 'Graphical install' --id installgui --hotkey=g {" in grub) == gtk
    isolinux = runner.tree["isolinux/isolinux.cfg"]
    assert "  MENU LABEL ^Install\n  MENU IMMEDIATE\n" in isolinux
    assert ("  MENU LABEL ^Graphical install\n" in isolinux) == gtk
    assert "preseed" not in grub and "preseed" not in runner.tree["isolinux/isolinux.cfg"]
    assert "preseed.cfg" not in runner.tree  # only inside the initrds
    archive = installer.preseed_archive(b"d-i x string y\n", 1700000000)
    expected = {"install.amd/initrd.gz", "install.amd/gtk/initrd.gz"} if gtk \
        else {"install.amd/initrd.gz"}
    assert runner.initrds == {name: b"initrd" + archive for name in expected}


@needs_host_boot_files
def test_build_iso_failure_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "live.iso"
    with pytest.raises(BuildError), staged_file(out) as staged:
        iso.build_iso(FakeTools(fail_xorriso=True), iso.IsoSpec(arch="amd64",
                      distribution="bookworm"), _squash(tmp_path), staged, tmp_path / "work")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["squash", "work"]
    assert not list((tmp_path / "work").iterdir())


@pytest.mark.parametrize("fail_xorriso", [True, False])
def test_rebuild_that_fails_keeps_the_previous_iso(tmp_path: Path, fail_xorriso: bool) -> None:
    """xorriso fails, or the new ISO fails its check: the old ISO stays as it was."""
    out = tmp_path / "live.iso"
    out.write_bytes(b"the previous, good ISO")

    def check(path: Path) -> None:
        raise BuildError(f"{path} has no EFI El Torito boot entry")

    with pytest.raises(BuildError), staged_file(out, check=check) as staged:
        iso.build_iso(FakeTools(fail_xorriso=fail_xorriso), iso.IsoSpec(
            arch="amd64", distribution="bookworm"), _squash(tmp_path), staged, tmp_path / "w")
    assert out.read_bytes() == b"the previous, good ISO"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.iso", "squash", "w"]


def test_no_room_for_a_second_iso_is_refused_first(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "live.iso"
    out.write_bytes(b"old")
    squash = _squash(tmp_path)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(iso.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 10 * 2**20))
    with pytest.raises(NoSpace, match=r"not enough free space .* previous live.iso is kept"):
        iso.check_room_for_iso(squash, out)


def test_arm64_menus_use_ttyama0() -> None:
    entries = isomenu.menu_entries(arch="arm64", serial_console=True, serial_tty="ttyAMA0")
    assert all("console=ttyAMA0,115200n8" in e.append for e in entries)
    assert not any("ttyS0" in " ".join(e.append) for e in entries)


def test_splash_must_be_png(tmp_path: Path) -> None:
    bad = tmp_path / "splash.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0JFIF")
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", splash=bad)
    assert any("not a PNG" in p for p in iso.validate_spec(spec))


@needs_host_boot_files
def test_build_iso_with_splash(tmp_path: Path) -> None:
    splash = tmp_path / "splash.png"
    splash.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    runner = FakeTools()
    spec = iso.IsoSpec(arch="amd64", distribution="bookworm", splash=splash)
    iso.build_iso(runner, spec, _squash(tmp_path), tmp_path / "l.iso", tmp_path / "work")
    for name in ("isolinux/vesamenu.c32", "isolinux/splash.png", "boot/grub/splash.png"):
        assert name in runner.tree
    assert "MENU BACKGROUND splash.png" in runner.tree["isolinux/isolinux.cfg"]
    assert "background_image" in runner.tree["boot/grub/grub.cfg"]
