"""``make test-package``: the package as a user gets it, built, checked and installed alone.

1. Builds the sdist and the wheel with the pinned hatchling (the PEP 517 hooks ``python -m build``
   calls, without its isolated environment), then the wheel again from the unpacked sdist: both
   wheels must hold the same files, so the sdist is complete.
2. Checks the metadata as PyPI does at upload (``packaging.metadata`` with validation, which is
   what PyPI runs), and what this project promises in it: the README as a Markdown long
   description, the project URLs, the dependencies, ``py.typed`` and the provider entry point.
3. Installs the wheel, with Airflow, into a new virtualenv with uv (``--uv``, what the Makefile
   builds its virtualenvs with; versions held to ``requirements/dev.lock`` so that a run is
   reproducible; uv's cache is reused), and
   runs Airflow's CLI there from an empty directory without PYTHONPATH, so the wheel's copy is
   the one imported: ``airflow providers list`` shows the provider at the wheel's version,
   ``airflow providers hooks`` its connection type, hook class and name, and every file in
   ``example_dags/`` parses into DAGs with no import errors.

Prints what it checked; exits 1 with the reason at the first failure. Takes under a minute, most
of it Airflow's CLI.

    python scripts/check_package.py --uv .venv-tools/bin/uv
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "dev.lock"
EXAMPLE_DAGS = REPO / "example_dags"
PACKAGE = "airflow-provider-cerebelum"
CONNECTION_TYPE = "cerebelum"
HOOK_CLASS = "cerebelum_provider.hooks.cerebelum.CerebelumHook"
HOOK_NAME = "Cerebelum Core"
PROJECT_URLS = {"Homepage", "Documentation", "Changelog", "Source", "Issues"}


class CheckFailed(Exception):
    """One check failed; the message says which and what was seen."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uv", type=Path, required=True, help="the uv executable that installs the wheel")
    uv = parser.parse_args().uv.resolve()
    if not uv.is_file():
        print(
            f"package check FAILED: --uv {uv} is not a file (make test-package installs uv)", file=sys.stderr
        )
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cerebelum-package-") as scratch:
        work = Path(scratch)
        try:
            wheel, sdist = build(work / "dist")
            check_metadata(wheel, sdist)
            check_sdist_rebuilds(wheel, sdist, work / "from-sdist")
            python = install(uv, wheel, work / "venv")
            check_installed(python, work)
        except CheckFailed as failure:
            print(f"package check FAILED: {failure}", file=sys.stderr)
            return 1
    print(f"package check passed ({time.monotonic() - started:.0f} s)")
    return 0


def build(out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True)
    wheel = out / build_with_hatchling(REPO, out, "wheel")
    sdist = out / build_with_hatchling(REPO, out, "sdist")
    print(f"built {wheel.name} and {sdist.name}")
    return wheel, sdist


def build_with_hatchling(source: Path, out: Path, kind: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", f"import hatchling.build as b; print(b.build_{kind}({str(out)!r}))"],
        check=False,
        cwd=source,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise CheckFailed(f"building the {kind} from {source} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def check_metadata(wheel: Path, sdist: Path) -> None:
    from packaging.metadata import ExceptionGroup, Metadata

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
        wheel_metadata = archive.read(f"{dist_info}/METADATA")
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    with tarfile.open(sdist) as archive:
        pkg_info = next(member for member in archive.getmembers() if member.name.endswith("/PKG-INFO"))
        extracted = archive.extractfile(pkg_info)
        assert extracted is not None
        sdist_metadata = extracted.read()

    for where, raw in (("wheel METADATA", wheel_metadata), ("sdist PKG-INFO", sdist_metadata)):
        try:
            metadata = Metadata.from_email(raw, validate=True)
        except ExceptionGroup as errors:
            raise CheckFailed(
                f"{where} is not valid core metadata: {'; '.join(map(str, errors.exceptions))}"
            ) from None
        expect(str(metadata.name) == PACKAGE, f"{where}: Name is {metadata.name!r}, expected {PACKAGE!r}")
        expect(
            metadata.description_content_type == "text/markdown",
            f"{where}: Description-Content-Type is {metadata.description_content_type!r}, "
            "expected 'text/markdown' (the README)",
        )
        readme = (REPO / "README.md").read_text()
        expect(
            (metadata.description or "").strip() == readme.strip(),
            f"{where}: the long description is not README.md",
        )
        urls = set((metadata.project_urls or {}).keys())
        expect(
            {label.lower() for label in PROJECT_URLS} <= {label.lower() for label in urls},
            f"{where}: Project-URL labels are {sorted(urls)}, expected at least {sorted(PROJECT_URLS)}",
        )
        requires = {str(requirement.name) for requirement in metadata.requires_dist or ()}
        expect(
            "apache-airflow" in requires,
            f"{where}: Requires-Dist {sorted(requires)} has no apache-airflow",
        )
        expect(
            metadata.license_expression == "Apache-2.0",
            f"{where}: License-Expression is {metadata.license_expression!r}, expected 'Apache-2.0'",
        )
    print(f"metadata valid (packaging.metadata, as PyPI validates): {PACKAGE} {metadata.version}")

    expect(
        "cerebelum_provider/py.typed" in names,
        f"{wheel.name} has no cerebelum_provider/py.typed: type checkers would ignore the package's hints",
    )
    expect(
        "cerebelum_provider.get_provider_info:get_provider_info" in entry_points
        and "[apache_airflow_provider]" in entry_points,
        f"{wheel.name} has no apache_airflow_provider entry point:\n{entry_points}",
    )
    strays = sorted(name for name in names if name.startswith(("tests/", "example_dags/", "scripts/")))
    expect(not strays, f"{wheel.name} ships files that are not the package: {strays[:5]}")
    print(f"{wheel.name}: py.typed, the provider entry point, nothing but the package")


def check_sdist_rebuilds(wheel: Path, sdist: Path, work: Path) -> None:
    work.mkdir()
    with tarfile.open(sdist) as archive:
        # The "data" filter (no links out, no device files) exists from Python 3.10.12 and 3.11.4 on.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(work, **safe)
    (source,) = work.iterdir()
    rebuilt = work / build_with_hatchling(source, work, "wheel")
    with zipfile.ZipFile(wheel) as direct, zipfile.ZipFile(rebuilt) as again:
        missing = sorted(set(direct.namelist()) - set(again.namelist()))
        extra = sorted(set(again.namelist()) - set(direct.namelist()))
    expect(
        not missing and not extra,
        f"the wheel built from {sdist.name} differs from the one built from the repository: "
        f"missing {missing[:5]}, extra {extra[:5]}",
    )
    print(f"{sdist.name} builds the same wheel")


def install(uv: Path, wheel: Path, target: Path) -> Path:
    started = time.monotonic()
    run(
        [str(uv), "venv", "--quiet", "--python", sys.executable, str(target)],
        "creating a clean virtualenv",
        target.parent,
        clean_env(target),
    )
    python = target / "bin" / "python"
    run(
        [
            str(uv),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "--constraint",
            str(LOCK),
            str(wheel),
        ],
        "installing the wheel with Airflow into a clean virtualenv",
        target,
        clean_env(target),
    )
    print(f"installed {wheel.name} and Airflow into a clean virtualenv ({time.monotonic() - started:.0f} s)")
    return python


def check_installed(python: Path, work: Path) -> None:
    home = work / "airflow-home"
    home.mkdir()
    cwd = work / "empty"
    cwd.mkdir()
    env = clean_env(python.parents[1])
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(EXAMPLE_DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    airflow = str(python.parent / "airflow")

    where_and_version = (
        "import importlib.metadata, cerebelum_provider; "
        f"print(cerebelum_provider.__file__); print(importlib.metadata.version({PACKAGE!r}))"
    )
    imported, installed_version = run(
        [str(python), "-c", where_and_version], "importing the installed package", cwd, env
    ).splitlines()
    expect(
        Path(imported).is_relative_to(python.parents[1]),
        f"cerebelum_provider was imported from {imported}, not from the clean virtualenv",
    )

    providers = cli_json([airflow, "providers", "list", "-o", "json"], cwd, env)
    listed = [provider for provider in providers if provider.get("package_name") == PACKAGE]
    expect(
        bool(listed),
        f"`airflow providers list` does not show {PACKAGE}: {[p.get('package_name') for p in providers]}",
    )
    expect(
        listed[0].get("version") == installed_version,
        f"`airflow providers list` shows {PACKAGE} {listed[0].get('version')}, "
        f"the wheel is {installed_version}",
    )
    hooks = cli_json([airflow, "providers", "hooks", "-o", "json"], cwd, env)
    ours = [hook for hook in hooks if hook.get("package_name") == PACKAGE]
    expect(
        [(hook.get("connection_type"), hook.get("class"), hook.get("hook_name")) for hook in ours]
        == [(CONNECTION_TYPE, HOOK_CLASS, HOOK_NAME)],
        f"`airflow providers hooks` shows {ours} for {PACKAGE}, expected the connection type "
        f"{CONNECTION_TYPE!r} served by {HOOK_CLASS} named {HOOK_NAME!r}",
    )
    print(f"airflow providers list: {PACKAGE} {listed[0]['version']}, connection type {CONNECTION_TYPE!r}")

    run([airflow, "db", "migrate"], "airflow db migrate", cwd, env)
    dags, stderr = cli_json_and_stderr([airflow, "dags", "list", "--local", "-o", "json"], cwd, env)
    parsed_files = {Path(dag["fileloc"]).name for dag in dags}
    example_files = {path.name for path in EXAMPLE_DAGS.glob("*.py")}
    # `dags list` says "Failed to load all files" on stderr when any file has an import error: only
    # then is Airflow asked for the errors themselves (an Airflow CLI run costs about 10 CPU s).
    if "Failed to load all files" in stderr or not example_files <= parsed_files:
        # Exit status 1 with the errors as JSON when a file does not import.
        errors = cli_json(
            [airflow, "dags", "list-import-errors", "--local", "-o", "json"], cwd, env, ok=(0, 1)
        )
        expect(
            not errors,
            "the example DAGs do not parse against the installed wheel:\n"
            + "\n".join(f"{error['filepath']}: {error['error'][-600:]}" for error in errors),
        )
    expect(
        example_files <= parsed_files,
        f"example DAG files without a DAG: {sorted(example_files - parsed_files)}",
    )
    print(f"airflow dags list: {len(dags)} example DAGs from {len(example_files)} files, no import errors")


def cli_json(command: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)) -> list[dict]:
    """The JSON list an ``airflow ... -o json`` command prints (its last line: log lines and
    warnings come before it on stdout)."""
    return cli_json_and_stderr(command, cwd, env, ok)[0]


def cli_json_and_stderr(
    command: list[str], cwd: Path, env: dict[str, str], ok: tuple[int, ...] = (0,)
) -> tuple[list[dict], str]:
    """``cli_json``'s list, and what the command printed on stderr."""
    done = subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    if done.returncode not in ok or not lines:
        raise CheckFailed(
            f"`{' '.join(command[1:])}` failed (exit {done.returncode}):\n"
            f"{(done.stderr + done.stdout)[-3000:]}"
        )
    return json.loads(lines[-1]), done.stderr


def clean_env(venv_dir: Path) -> dict[str, str]:
    """The environment of a user's shell with only this virtualenv active: no PYTHONPATH, no
    other virtualenv, no Airflow settings of the caller."""
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        {
            name: value
            for name, value in os.environ.items()
            if name.startswith(("PIP_", "UV_")) and name != "PIP_USER"
        }
    )
    env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin"
    env["VIRTUAL_ENV"] = str(venv_dir)
    return env


def run(command: list[str], what: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise CheckFailed(f"{what} failed (exit {done.returncode}):\n{(done.stderr or done.stdout)[-3000:]}")
    return done.stdout


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


if __name__ == "__main__":
    sys.exit(main())
