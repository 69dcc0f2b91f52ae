"""Benchmarks of vmdebootstrap against plain debootstrap, mmdebstrap and live-build.

Run ``sudo .venv/bin/python benchmarks/run.py --help``; see benchmarks/README.md.
"""
