#!/bin/sh
# Customisation hook for the console live image.
#   $1: the root directory of the image   $2: the output's name
# The helpers come from vmdebootstrap: see VMDEBOOTSTRAP_HELPERS.
set -e
rootdir="$1"
. "$VMDEBOOTSTRAP_HELPERS"

trap cleanup EXIT
export_env
mount_proc
disable_daemons
prepare_apt_source "$VMDEBOOTSTRAP_MIRROR"

# With its Recommends (ca-certificates), so https works on the live system.
apt_install curl

replace_apt_source
remove_daemon_block
cleanup

cat > "$rootdir/etc/issue" <<ISSUE
Debian GNU/Linux live (console) \\n \\l
Log in as "user" with the password "live".

ISSUE
echo "Built by vmdebootstrap for $VMDEBOOTSTRAP_DISTRIBUTION/$VMDEBOOTSTRAP_ARCH" > "$rootdir/etc/motd"
