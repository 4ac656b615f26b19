"""What a user installs: the wheel without extras, the sdist with its own tests, the metadata.

The slow tests build the wheel and the sdist with ``python -m build`` and
install them into fresh virtual environments (dependencies come from the
package index, as for a user).
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.version import Version

import tornado_kit
from tests._user_project import PLUGIN_LAYOUTS, assert_passed, plain_env, run_pytest, write_layout
from tornado_kit.__main__ import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PROJECT_URL = "https://github.com/tornado-kit/tornado-kit"
URL_LABELS = {"Homepage", "Documentation", "Source", "Changelog", "Issues"}


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command with a plain environment; fail the test with its output if it fails."""
    result = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        env=plain_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


def _new_venv(path: Path, *requirements: str | Path) -> Path:
    """A fresh virtual environment with *requirements* installed; returns its python."""
    venv.create(path, with_pip=True)
    python = path / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", *requirements)
    return python


@dataclass
class Dist:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The sdist, and the wheel built from it, as ``python -m build`` makes them."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Dist(wheel, sdist)


def test_the_version_has_one_source() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "tornado_kit/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", tornado_kit.__version__)


def test_version_option_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"tornado-kit {tornado_kit.__version__}\n"


@pytest.mark.slow
def test_wheel_without_extras_runs_the_helpers_without_pytest(dist: Dist, tmp_path: Path) -> None:
    python = _new_venv(tmp_path / "venv", dist.wheel)
    no_pytest = subprocess.run([python, "-c", "import pytest"], capture_output=True, text=True)
    assert "No module named 'pytest'" in no_pytest.stderr
    project = write_layout(tmp_path / "project", "script")
    assert _run(python, "helpers_script.py", cwd=project).stdout == "helpers ok\n"

    expected = f"tornado-kit {tornado_kit.__version__}\n"
    assert _run(tmp_path / "venv" / "bin" / "tornado-kit", "--version").stdout == expected
    assert _run(python, "-m", "tornado_kit", "--version").stdout == expected

    metadata = email.message_from_string(
        _run(
            python, "-c", "import importlib.metadata as m; print(m.metadata('tornado-kit'))"
        ).stdout
    )
    assert metadata["Version"] == tornado_kit.__version__
    urls = dict(line.split(", ", 1) for line in metadata.get_all("Project-URL", []))
    assert set(urls) == URL_LABELS
    assert all(url.startswith(PROJECT_URL) for url in urls.values()), urls
    assert "testing" in metadata.get_all("Provides-Extra", [])


def _minimum_testing_requirements(pyproject: Path) -> list[str]:
    """The ``testing`` extra with each ``>=`` floor turned into an exact pin."""
    extra = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["testing"]
    pins = [requirement.replace(">=", "==") for requirement in extra]
    assert all(re.fullmatch(r"[\w-]+==[\d.]+", pin) for pin in pins), pins
    return pins


@pytest.mark.slow
def test_sdist_runs_its_own_tests_on_the_minimum_testing_extra(dist: Dist, tmp_path: Path) -> None:
    with tarfile.open(dist.sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    (source,) = tmp_path.glob("tornado_kit-*")
    for path in ("examples/reference_app", "examples/01_token_auth.py", "tests", "docs"):
        assert (source / path).exists(), f"the sdist lacks {path}"

    pins = _minimum_testing_requirements(source / "pyproject.toml")
    python = _new_venv(tmp_path / "venv", f"{source}[testing]", *pins, "hypothesis")
    for pin in pins:
        name, version = pin.split("==")
        installed = _run(
            python, "-c", f"import importlib.metadata as m; print(m.version({name!r}))"
        )
        assert Version(installed.stdout.strip()) == Version(version)

    # The sdist's own tests, with its own pytest configuration (warnings are
    # errors), and one that runs a numbered example from the sdist's examples/.
    tests = _run(
        python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "tests/test_json.py", "tests/test_testing_sse.py",
        "tests/test_errors.py::test_example_02_runs_on_its_own",
        cwd=source,
    )  # fmt: skip
    assert re.search(r"\d+ passed", tests.stdout)
    assert "failed" not in tests.stdout

    # A user's project on the minimum versions: every layout, and the docs' example.
    for layout, args in PLUGIN_LAYOUTS:
        assert_passed(run_pytest(python, write_layout(tmp_path / layout, layout), *args), 3)
    assert_passed(run_pytest(python, write_layout(tmp_path / "snippet", "snippet")), 4)
