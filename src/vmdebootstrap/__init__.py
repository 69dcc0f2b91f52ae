"""vmdebootstrap: build Debian live root filesystems, ISOs, tarballs and disk images."""

__version__ = "2.0.0"
