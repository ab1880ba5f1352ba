"""The optional C part: a faster constructor for the chunk classes.

Everything else is declared in pyproject.toml. ``optional=True``: where no C compiler is
at hand the package installs without it and the classes build through their Python
``__init__``, with the same behaviour.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("lmstream._speedups", ["lmstream/_speedups.c"], optional=True)])
