"""The harness itself (scripts/real_core.py): how it finds the release and refuses a second Core."""

from __future__ import annotations

from pathlib import Path

import pytest
from real_core import METRICS_PORT, RealCore, RealCoreError, find_release

pytestmark = [pytest.mark.realcore, pytest.mark.shares_real_core]


def test_missing_release_names_the_directory_and_the_variable(tmp_path: Path) -> None:
    (tmp_path / "run-core").write_text("#!/bin/sh\n")  # a script without a release tarball is not enough
    release = find_release(tmp_path)
    assert release.missing == (
        f"real Core release not found at {tmp_path}; set CEREBELUM_REAL_CORE to a directory holding "
        "run-core and a cerebelum-core-*-release.tgz"
    )
    with pytest.raises(RealCoreError, match="real Core release not found"):
        RealCore(release)


def test_release_commit_comes_from_the_tarball_name(real_core: RealCore) -> None:
    release = find_release()
    assert release.tarball is not None
    assert release.tarball.name == f"cerebelum-core-{release.commit}-release.tgz"
    assert real_core.release == release.commit


def test_a_second_core_is_refused_while_port_4021_is_held(real_core: RealCore, tmp_path: Path) -> None:
    second = RealCore(find_release(), tmp_path / "second")
    with pytest.raises(RealCoreError, match=f"port {METRICS_PORT} is already in use"):
        second.start()
    # refused before anything started: no token service, no worker, no Core state
    assert second.token == "" and not (tmp_path / "second" / "worker.log").exists()
    assert second.state_dir is None
    # and the refused one's clean-up left the running stack alone
    real_core.wait_for_state(real_core.start_execution("rc_ok", {}), {"completed"})
