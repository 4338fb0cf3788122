"""Layout files of the packaged sample catalogue (a package only so that setuptools ships them)."""
