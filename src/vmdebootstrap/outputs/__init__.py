"""Outputs written from a finished root: the one publish step, files, ISO, disk image."""
