"""Packaged sample catalogue data (a package only so that setuptools ships the files)."""
