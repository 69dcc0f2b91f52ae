# shellcheck shell=sh
# Helper library for vmdebootstrap --customize hooks.  POSIX sh; source it:
#
#   #!/bin/sh
#   set -e
#   rootdir=$1                      # optional: defaults to $VMDEBOOTSTRAP_ROOT
#   . "$VMDEBOOTSTRAP_HELPERS"
#   export_env
#   trap cleanup EXIT
#   mount_proc
#   disable_daemons
#   prepare_apt_source "$VMDEBOOTSTRAP_MIRROR"
#   apt_install task-xfce-desktop
#   remove_daemon_block
#   replace_apt_source
#
# Every function works on $rootdir, or $VMDEBOOTSTRAP_ROOT if the hook did not
# set rootdir, and refuses (message on stderr, status 1) if that is empty or
# resolves to the host's /.  Functions return non-zero on failure, so `set -e`
# stops the hook; vmdebootstrap undoes mounts, the daemon block and the build
# apt source itself if a hook exits before doing so.
#
# vmdebootstrap 1.x hooks run unchanged: tools/setup-host links this file to
# 1.x's /usr/share/vmdebootstrap/common/customise.lib, sourcing it exports
# DEBIAN_FRONTEND=noninteractive and a C locale as 1.x's library did, and
# 1.x's names are here: mount_support (= mount_proc), cleanup,
# disable_daemons, remove_daemon_block, prepare_apt_source MIRROR SUITE,
# replace_apt_source and blacklist_qemu_bochs.

# after_hook in customise.py looks for this line to tell our policy-rc.d apart
# from one the image or the build put there.
_vmdb_block_marker='# vmdebootstrap customise.sh disable_daemons'
# Its existence tells customise.py that the build apt source is still in place.
_vmdb_saved_rel='etc/apt/vmdebootstrap-saved'

_vmdb_say() {
    printf 'vmdebootstrap helpers: %s\n' "$*" >&2
}

# Sets _vmdb_r to the physical path of the root directory.  Resolving it
# (rather than comparing strings) also catches "//", "/." and "/tmp/..".
_vmdb_root() {
    _vmdb_raw=${rootdir:-${VMDEBOOTSTRAP_ROOT:-}}
    if [ -z "$_vmdb_raw" ]; then
        _vmdb_say "no root directory: set rootdir or VMDEBOOTSTRAP_ROOT"
        return 1
    fi
    # CDPATH would make cd print the directory and change its meaning.
    if ! _vmdb_r=$(CDPATH='' cd -- "$_vmdb_raw" 2>/dev/null && pwd -P); then
        _vmdb_say "root directory $_vmdb_raw is not a directory"
        return 1
    fi
    if [ "$_vmdb_r" = / ]; then
        _vmdb_say "refusing to work on the host's / (root directory is $_vmdb_raw)"
        return 1
    fi
}

# _vmdb_chroot CMD...: CMD inside the root.  TMPDIR names a directory on the
# host that does not exist in the root (mkinitramfs would fail there).
_vmdb_chroot() {
    (unset TMPDIR; chroot "$_vmdb_r" "$@")
}

_vmdb_export_env() {
    DEBIAN_FRONTEND=noninteractive
    DEBCONF_NONINTERACTIVE_SEEN=true
    LC_ALL=C.UTF-8
    LANG=C.UTF-8
    export DEBIAN_FRONTEND DEBCONF_NONINTERACTIVE_SEEN LC_ALL LANG
    # 1.x set LANGUAGE=C; unset it is as untranslated and cannot name a
    # language list that overrides the C locale.
    unset LANGUAGE
}

export_env() {
    _vmdb_root || return 1
    _vmdb_export_env
}

# As 1.x's library did when sourced: its hooks run apt-get in the root
# without calling export_env.  Setting the same values again is harmless.
_vmdb_export_env

# _vmdb_mount TARGET MOUNT-ARGS...: mount unless something already is there.
_vmdb_mount() {
    _vmdb_target=$1
    shift
    if mountpoint -q "$_vmdb_target"; then
        return 0
    fi
    mkdir -p "$_vmdb_target" || return 1
    mount "$@" "$_vmdb_target" || {
        _vmdb_say "could not mount $_vmdb_target"
        return 1
    }
}

# True in a user namespace (a build without root): there, sysfs can only
# be mounted by the network namespace's owner, and the host's /dev comes
# with the mounts below it locked to it, so both are bound whole.
_vmdb_userns() {
    ! grep -qE '^ *0 +0 +4294967295 *$' /proc/self/uid_map 2>/dev/null
}

mount_proc() {
    _vmdb_root || return 1
    _vmdb_mount "$_vmdb_r/proc" -t proc proc || return 1
    if _vmdb_userns; then
        _vmdb_mount "$_vmdb_r/sys" --rbind /sys || return 1
    else
        _vmdb_mount "$_vmdb_r/sys" -t sysfs -o ro sysfs || return 1
    fi
    if ! mountpoint -q "$_vmdb_r/dev"; then
        if _vmdb_userns; then
            _vmdb_mount "$_vmdb_r/dev" --rbind /dev || return 1
        else
            _vmdb_mount "$_vmdb_r/dev" --bind /dev || return 1
        fi
        # With shared propagation (systemd's default) the devpts mounted
        # below would also appear over the host's own /dev/pts.
        mount --make-private "$_vmdb_r/dev" || return 1
    fi
    # A private devpts instance: ptys opened in the root are not the host's.
    _vmdb_mount "$_vmdb_r/dev/pts" -t devpts -o newinstance,ptmxmode=0666 devpts
}

# 1.x's name (1.x mounted only proc and sys; cleanup undoes either).
mount_support() {
    mount_proc
}

# Unmounts what mount_proc mounts, deepest first.  Never fails because
# something is already gone, so it is safe twice and as `trap cleanup EXIT`;
# returns 1 only if a mount point is still mounted at the end.
cleanup() {
    _vmdb_root || return 1
    _vmdb_status=0
    for _vmdb_m in "$_vmdb_r/dev/pts" "$_vmdb_r/dev" "$_vmdb_r/sys" "$_vmdb_r/proc"; do
        mountpoint -q "$_vmdb_m" || continue
        # Private first: unmounting a shared copy of the host's /dev would
        # also unmount the host's own /dev/pts and /dev/shm.
        mount --make-rprivate "$_vmdb_m" 2>/dev/null || true
        # -R takes along anything a package mounted below (binfmt_misc...);
        # a process still holding files there only delays the lazy unmount.
        umount -R "$_vmdb_m" 2>/dev/null || umount -l "$_vmdb_m" 2>/dev/null || true
    done
    # Checked once all are done: a locked copy of the host's /dev/pts goes
    # only with the /dev above it.
    for _vmdb_m in "$_vmdb_r/dev/pts" "$_vmdb_r/dev" "$_vmdb_r/sys" "$_vmdb_r/proc"; do
        if mountpoint -q "$_vmdb_m"; then
            _vmdb_say "could not unmount $_vmdb_m"
            _vmdb_status=1
        fi
    done
    return "$_vmdb_status"
}

disable_daemons() {
    _vmdb_root || return 1
    _vmdb_p=$_vmdb_r/usr/sbin/policy-rc.d
    if [ -e "$_vmdb_p" ] && ! grep -qxF "$_vmdb_block_marker" "$_vmdb_p"; then
        # Not ours: overwriting it would lose it, and remove_daemon_block
        # could not tell whose it was.
        _vmdb_say "keeping the existing $_vmdb_p"
        return 0
    fi
    mkdir -p "$_vmdb_r/usr/sbin" || return 1
    printf '#!/bin/sh\n%s\nexit 101\n' "$_vmdb_block_marker" >"$_vmdb_p" || return 1
    chmod 755 "$_vmdb_p"
}

remove_daemon_block() {
    _vmdb_root || return 1
    _vmdb_p=$_vmdb_r/usr/sbin/policy-rc.d
    if [ -e "$_vmdb_p" ] && grep -qxF "$_vmdb_block_marker" "$_vmdb_p"; then
        rm -f "$_vmdb_p"
    fi
}

# _vmdb_move_entries FROM TO: move every entry of FROM, dotfiles too, into TO.
_vmdb_move_entries() {
    [ -d "$1" ] || return 0
    mkdir -p "$2" || return 1
    find "$1" -mindepth 1 -maxdepth 1 -exec mv -f -t "$2" {} +
}

# prepare_apt_source MIRROR [SUITE]
prepare_apt_source() {
    _vmdb_root || return 1
    if [ -z "${1:-}" ]; then
        _vmdb_say "prepare_apt_source: no mirror given"
        return 1
    fi
    _vmdb_suite=${2:-${VMDEBOOTSTRAP_DISTRIBUTION:-}}
    if [ -z "$_vmdb_suite" ]; then
        _vmdb_say "prepare_apt_source: no suite given and VMDEBOOTSTRAP_DISTRIBUTION is unset"
        return 1
    fi
    _vmdb_components=$(printf '%s' "${VMDEBOOTSTRAP_COMPONENTS:-main}" | tr ',' ' ')
    _vmdb_apt=$_vmdb_r/etc/apt
    _vmdb_saved=$_vmdb_r/$_vmdb_saved_rel
    if [ -e "$_vmdb_saved" ] || [ -L "$_vmdb_saved" ]; then
        _vmdb_say "prepare_apt_source: $_vmdb_saved exists; call replace_apt_source first"
        return 1
    fi
    # The marker comes first: if anything below fails, vmdebootstrap still
    # knows to put the image's sources back.
    mkdir -p "$_vmdb_saved/sources.list.d" || return 1
    if [ -e "$_vmdb_apt/sources.list" ] || [ -L "$_vmdb_apt/sources.list" ]; then
        mv -f "$_vmdb_apt/sources.list" "$_vmdb_saved/sources.list" || return 1
    fi
    _vmdb_move_entries "$_vmdb_apt/sources.list.d" "$_vmdb_saved/sources.list.d" || return 1
    printf '%s\n' "deb $1 $_vmdb_suite $_vmdb_components" >"$_vmdb_apt/sources.list" \
        || return 1
    _vmdb_chroot apt-get -q update
}

replace_apt_source() {
    _vmdb_root || return 1
    _vmdb_apt=$_vmdb_r/etc/apt
    _vmdb_saved=$_vmdb_r/$_vmdb_saved_rel
    if [ ! -d "$_vmdb_saved" ]; then
        _vmdb_say "replace_apt_source: no saved sources in $_vmdb_saved (prepare_apt_source not called?)"
        return 1
    fi
    rm -f "$_vmdb_apt/sources.list" || return 1
    if [ -e "$_vmdb_saved/sources.list" ] || [ -L "$_vmdb_saved/sources.list" ]; then
        mv -f "$_vmdb_saved/sources.list" "$_vmdb_apt/sources.list" || return 1
    fi
    _vmdb_move_entries "$_vmdb_saved/sources.list.d" "$_vmdb_apt/sources.list.d" || return 1
    rmdir "$_vmdb_saved/sources.list.d" "$_vmdb_saved" || return 1
    # Lists fetched from the build mirror must not ship in the image.
    if [ -d "$_vmdb_r/var/lib/apt/lists" ]; then
        find "$_vmdb_r/var/lib/apt/lists" -mindepth 1 -maxdepth 1 \
            ! -name lock ! -name partial -exec rm -rf {} +
    fi
}

# apt_install PKG...: with Recommends (task-* packages need them), no
# progress bar; dpkg's Unpacking/Setting up lines still reach the log.
apt_install() {
    _vmdb_root || return 1
    if [ "$#" -eq 0 ]; then
        _vmdb_say "apt_install: no packages given"
        return 1
    fi
    (
        DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true
        export DEBIAN_FRONTEND DEBCONF_NONINTERACTIVE_SEEN
        _vmdb_chroot apt-get -y -q -o Dpkg::Use-Pty=0 -o APT::Color=0 \
            --install-recommends install "$@"
    )
}

# 1.x's helper for images booted in QEMU: keep bochs-drm from loading.
blacklist_qemu_bochs() {
    _vmdb_root || return 1
    _vmdb_d=$_vmdb_r/etc/modprobe.d
    mkdir -p "$_vmdb_d" || return 1
    # An etc or etc/modprobe.d that is a symbolic link to an absolute path
    # would lead out of the root.
    case $(CDPATH='' cd -- "$_vmdb_d" && pwd -P) in
        "$_vmdb_r"/*) ;;
        *)
            _vmdb_say "blacklist_qemu_bochs: $_vmdb_d leads out of the root"
            return 1
            ;;
    esac
    _vmdb_f=$_vmdb_d/qemu-blacklist.conf
    # Removed first, so a symbolic link there is replaced, not followed.
    rm -f "$_vmdb_f" || return 1
    printf 'blacklist bochs-drm\n' >"$_vmdb_f" || return 1
    chmod 644 "$_vmdb_f"
}
