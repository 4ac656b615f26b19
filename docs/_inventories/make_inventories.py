"""Regenerate the two Sphinx inventories that ``docs/conf.py`` gives intersphinx.

The docs build runs without a network, so intersphinx cannot fetch
``objects.inv`` from tornadoweb.org or docs.python.org. Both inventories are
made here from packages instead, and committed:

``tornado.inv``
    Built by Sphinx from the documentation sources that ship in Tornado's sdist
    on PyPI (``pip download --no-binary``), for the Tornado version installed
    in this environment: the same sources tornadoweb.org builds.
``python.inv``
    The inventory of the Python documentation in Debian's ``python3-doc``
    package (``apt-get install python3-doc``).

Run ``make docs-inventories`` after a Tornado or Python upgrade; the build
then links to the objects those versions document.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import tornado

HERE = Path(__file__).resolve().parent
PYTHON_DOC_INVENTORY = Path("/usr/share/doc/python3/html/objects.inv")


def python_inventory(target: Path) -> None:
    """Copy the inventory of Debian's python3-doc package to *target*."""
    if not PYTHON_DOC_INVENTORY.is_file():
        sys.exit(f"{PYTHON_DOC_INVENTORY} is missing: apt-get install python3-doc")
    shutil.copyfile(PYTHON_DOC_INVENTORY, target)


def tornado_inventory(target: Path) -> None:
    """Build Tornado's own docs from its sdist and keep their ``objects.inv``."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(  # noqa: S603  (this interpreter, fixed arguments)
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"tornado=={tornado.version}",
                "--dest",
                str(work),
            ],
            check=True,
        )
        (sdist,) = work.glob("tornado-*.tar.gz")
        with tarfile.open(sdist) as archive:
            archive.extractall(work, filter="data")
        (root,) = work.glob("tornado-*/")
        # Tornado's conf.py, with the plain theme instead of its Read the Docs
        # one and Python's inventory from python3-doc instead of the network.
        overrides = root / "conf-override"
        overrides.mkdir()
        tornado_conf = str(root / "docs" / "conf.py")
        python = ("https://docs.python.org/3/", str(PYTHON_DOC_INVENTORY))
        (overrides / "conf.py").write_text(
            f"exec(compile(open({tornado_conf!r}).read(), 'conf.py', 'exec'))\n"
            "html_theme = 'basic'\n"
            "html_favicon = None\n"
            f"intersphinx_mapping = {{'python': {python!r}}}\n"
        )
        subprocess.run(  # noqa: S603  (this interpreter, fixed arguments)
            [
                sys.executable,
                "-m",
                "sphinx",
                "--quiet",
                "--builder",
                "html",
                "--conf-dir",
                str(overrides),
                str(root / "docs"),
                str(work / "html"),
            ],
            check=True,
        )
        shutil.copyfile(work / "html" / "objects.inv", target)


def main() -> None:
    python_inventory(HERE / "python.inv")
    tornado_inventory(HERE / "tornado.inv")
    print(f"wrote {HERE / 'python.inv'} and {HERE / 'tornado.inv'} (Tornado {tornado.version})")


if __name__ == "__main__":
    main()
