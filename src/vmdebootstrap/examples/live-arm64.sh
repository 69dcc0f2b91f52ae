#!/bin/sh
# Customisation hook for the arm64 live root: binaries in the root run
# through qemu-user, so keep the package work here small.
set -e
rootdir="$1"
. "$VMDEBOOTSTRAP_HELPERS"

echo "Built by vmdebootstrap for $VMDEBOOTSTRAP_DISTRIBUTION/$VMDEBOOTSTRAP_ARCH" > "$rootdir/etc/motd"
