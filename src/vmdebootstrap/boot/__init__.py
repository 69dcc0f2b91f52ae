"""The boot proof: QEMU boot test and its serial console."""
