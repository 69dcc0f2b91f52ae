#!/bin/sh
# Customisation hook for a desktop live image.  Task packages are installed
# here, through apt in the chroot, so that their Recommends come too.
set -e
rootdir="$1"
. "$VMDEBOOTSTRAP_HELPERS"

trap cleanup EXIT
export_env
mount_proc
disable_daemons
prepare_apt_source "$VMDEBOOTSTRAP_MIRROR"

apt_install task-xfce-desktop live-task-localisation-desktop

replace_apt_source
remove_daemon_block
cleanup
