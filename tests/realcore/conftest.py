"""The real Cerebelum Core for this directory: one stack (Core, token service, SDK worker) per test module,
or one shared by the light modules.

``real_core`` is a started :class:`real_core.RealCore` (``scripts/real_core.py``): ``grpc_target``,
``http_url``, ``token``, ``release``, ``start_execution``, ``wait_for_state``, ``wait_for_event``,
``add_blueprint``, ``steps_run``, ``restart``. ``grpc_stub`` is a raw blocking ``WorkerServiceStub`` on it.
A module's tests share its stack: give an execution-counting test a workflow of its own
(``add_blueprint``), and leave ``restart`` to the conformance table, whose rows before its restart need
the engine processes Core keeps until then.

Why a fresh Core (and database) per module, not one per session: this Core release keeps an engine
process for every execution it ran since boot, and a REST read of any execution asks every one of
them for its status in turn (``Cerebelum.find_execution_by_id``), each call waiting up to 5 s for an
engine that is busy handing a step to the worker. Reads slow down as a session's executions pile up,
and one stuck engine stalls all of them: a whole-session stack made the stage fail on a slower
machine. Starting a stack costs a few seconds of CPU, and 15 to 60 s on a loaded machine: so the
modules that start a handful of executions each (the harness, the connection, the README example,
rerun) are marked ``shares_real_core`` and share one stack for the session (``shared_real_core``);
they give their executions workflows of their own, or read only the executions they started.

When a test here fails, its report carries the last lines of Core's and the worker's logs.

Every test here is marked ``realcore``. When the release is absent every test skips with one reason
(``pytest -rs`` prints it once); when it is present but does not start, the tests error. Only a run
that names this directory (``make test-realcore``) or selects ``-m realcore`` collects these tests:
any other run deselects them, so the suite's other stages never start a real Core.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from cerebelum_provider.proto import worker_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from real_core import RealCore

HERE = Path(__file__).resolve().parent
# scripts/ is not a package; the test modules here import real_core from it too
sys.path.insert(0, str(HERE.parent.parent / "scripts"))
real_core_harness = importlib.import_module("real_core")


#: The marker of a module whose ``real_core`` is the session's shared stack.
SHARES_REAL_CORE = "shares_real_core"


def _shares_real_core(node: pytest.Item | pytest.Module) -> bool:
    return node.get_closest_marker(SHARES_REAL_CORE) is not None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "realcore: runs against the real Cerebelum Core release")
    config.addinivalue_line(
        "markers", f"{SHARES_REAL_CORE}: the module's real_core is the session's shared stack, not its own"
    )


def _asked_for(config: pytest.Config) -> bool:
    """Whether this run names this directory (or a file in it) or selects the realcore marker."""
    if "realcore" in (config.option.markexpr or ""):
        return True
    for arg in config.args:
        target = Path(arg.split("::", 1)[0]).resolve()
        if target == HERE or HERE in target.parents:
            return True
    return False


@pytest.hookimpl(trylast=True)  # after tests/conftest.py's order, which this one refines
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [item for item in items if HERE in Path(item.fspath).parents]
    for item in mine:
        item.add_marker(pytest.mark.realcore)
    if mine and not _asked_for(config):
        config.hook.pytest_deselected(items=mine)
        items[:] = [item for item in items if item not in mine]
        return
    # The shared stack lives until the session ends: its modules run last, so that in one network
    # (no unshare, one Core at a time on port 4021) every module's own stack has stopped before it.
    items.sort(key=_shares_real_core)


@pytest.fixture(scope="session", autouse=True)
def _real_core_release() -> None:
    """Skip everything here, with one reason, when the release is not on this machine."""
    missing = real_core_harness.find_release().missing
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="module")
def real_core(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCore]:
    """A real Core stack for this module, or the session's shared one for a module marked
    ``shares_real_core``; its logs stay under pytest's temp dir."""
    if _shares_real_core(request.node):
        yield request.getfixturevalue("shared_real_core")
    else:
        yield from started_real_core(tmp_path_factory)


@pytest.fixture(scope="session")
def shared_real_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCore]:
    """One stack for the modules that start a few executions each (``shares_real_core``)."""
    yield from started_real_core(tmp_path_factory)


def started_real_core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCore]:
    """Start a real Core stack, yield it, stop it (the body of the ``real_core`` fixtures)."""
    workdir = tmp_path_factory.mktemp("real-core")
    with real_core_harness.RealCore(real_core_harness.find_release(), workdir) as core:
        _started.append(core)
        _running.append(core)
        try:
            yield core
        finally:
            _running.remove(core)


_started: list[RealCore] = []
_running: list[RealCore] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, add the tail of the running Core's log and the worker's log to the report."""
    report = yield
    if report.failed and _running and HERE in Path(item.fspath).parents:
        core = _running[-1]
        report.sections.append(("real Core log (last lines)", core.log_tail("core")))
        report.sections.append(("SDK worker log (last lines)", core.log_tail("worker")))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for core in _started:
        restarts = ", ".join(f"{seconds:.1f} s" for seconds in core.restarted_in) or "none"
        terminalreporter.write_line(
            f"real Core {core.release}: stack started in {core.started_in:.1f} s, restarts {restarts}; "
            f"logs in {core.workdir}"
        )


@pytest.fixture
def grpc_stub(real_core: RealCore) -> Iterator[pb_grpc.WorkerServiceStub]:
    """A raw blocking WorkerServiceStub over a plaintext channel to the real Core."""
    with grpc.insecure_channel(real_core.grpc_target) as channel:
        yield pb_grpc.WorkerServiceStub(channel)
