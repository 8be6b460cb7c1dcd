"""Build step: the single-file clients are built from clients/ and installed as scripts.

Everything else is in pyproject.toml. The four command-line clients are not
entry points: pip's entry-point wrappers import ``re`` and the whole package,
with site-packages, on every run. Installed as scripts, they are the same
single files an admin copies to a relay host, run by this interpreter with
``-IS`` (no site-packages: they need only the stdlib).
"""

import sys
from pathlib import Path

from setuptools import setup

try:
    from setuptools.command.build_scripts import build_scripts
except ImportError:  # setuptools < 69 has only the distutils command
    from distutils.command.build_scripts import build_scripts

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from clients import build  # noqa: E402 - after the path is set

OUT = ROOT / "build" / "client-scripts"


class BuildClientScripts(build_scripts):  # type: ignore[misc]
    """Build the single files, then give them this interpreter with ``-IS``.

    setuptools writes ``#!python -IS`` and pip replaces that whole line with a
    bare interpreter path, dropping ``-IS``; an absolute first line is left alone.
    """

    def copy_scripts(self):  # type: ignore[no-untyped-def]
        build.build(OUT)
        outfiles, updated = super().copy_scripts()
        for name in outfiles:
            path = Path(name)
            text = path.read_text()
            path.write_text(f"#!{sys.executable} -IS\n" + text.partition("\n")[2])
        return outfiles, updated


build.build(OUT)  # the files must exist when setup() reads the list
setup(
    scripts=[str((OUT / n).relative_to(ROOT)) for n in build.ENTRIES if "." not in n],
    cmdclass={"build_scripts": BuildClientScripts},
)
