"""Build step: the single-file clients, built from clients/, byte-compiled, behind stubs.

Everything else is in pyproject.toml. The four command-line clients are not
entry points: pip's entry-point wrappers import ``re`` and the whole package,
with site-packages, on every run. Their console scripts are three-line stubs
(this interpreter, ``-IS``) that import the single files clients/build.py
makes, byte-compiled: from build/client-lib/ in the source tree (editable
installs), else from the installed package (clients/_built/).
"""

import sys
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.build_scripts import build_scripts
except ImportError:  # setuptools < 69 has only the distutils command
    from distutils.command.build_scripts import build_scripts

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from clients import build  # noqa: E402 - after the path is set
from clients.cliutil import stub_text  # noqa: E402

LIB = ROOT / "build" / "client-lib"
STUBS = ROOT / "build" / "client-stubs"
NAMES = [n for n in build.ENTRIES if "." not in n]
LIBDIRS = [str(LIB), str(Path(sysconfig.get_paths()["purelib"]) / "clients" / "_built")]


class BuildClientScripts(build_scripts):  # type: ignore[misc]
    """The stubs, with this interpreter's absolute path on their first line.

    setuptools would write ``#!python -IS`` and pip would replace that whole
    line with a bare interpreter path, dropping ``-IS``; an absolute one is kept.
    """

    def copy_scripts(self):  # type: ignore[no-untyped-def]
        build.build_lib(LIB)
        outfiles, updated = super().copy_scripts()
        for out in map(Path, outfiles):
            out.write_text(stub_text(out.name, build.ENTRIES[out.name], LIBDIRS, sys.executable))
        return outfiles, updated


class BuildPyWithClients(build_py):  # type: ignore[misc]
    """Also put the single files in the package (clients/_built/) for non-editable installs."""

    def run(self):  # type: ignore[no-untyped-def]
        super().run()
        self.mkpath(str(Path(self.build_lib, "clients", "_built")))
        for path in build.build_lib(LIB):
            self.copy_file(str(path), str(Path(self.build_lib, "clients", "_built", path.name)))


for _name in NAMES:  # the script files must exist when setup() reads the list
    build._write(STUBS / _name, stub_text(_name, build.ENTRIES[_name], LIBDIRS, sys.executable))
setup(
    scripts=[str((STUBS / n).relative_to(ROOT)) for n in NAMES],
    cmdclass={"build_scripts": BuildClientScripts, "build_py": BuildPyWithClients},
)
