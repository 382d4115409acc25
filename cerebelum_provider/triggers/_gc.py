"""``[cerebelum] triggerer_gc_freeze``: an opt-in ``gc.freeze()`` when the first Cerebelum trigger
of a process starts.

A triggerer's heap is mostly Airflow itself, and every full garbage collection walks all of it,
during which no trigger of the process runs. Many polling triggers allocate enough to bring full
collections again and again, so the triggerer's event loop stalls that long that often.
``gc.freeze()`` moves every object alive at that moment out of the collector's sight, so a full
collection walks only what came after, and the worst stall of a trigger fleet shrinks (figures in
bench/RESULTS.md, "where the full collections come from"). By the time the first trigger runs, the
triggerer has imported Airflow and its providers, so that is the moment to freeze.

It is process-wide, so the provider does it only when asked, once per process.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

CONFIG_SECTION = "cerebelum"
CONFIG_OPTION = "triggerer_gc_freeze"

_checked = False


def freeze_gc_once_if_configured() -> None:
    """``gc.freeze()`` the first time a Cerebelum trigger runs in this process, when configured."""
    global _checked
    if _checked:
        return
    _checked = True
    from airflow.sdk.configuration import conf

    if not conf.getboolean(CONFIG_SECTION, CONFIG_OPTION, fallback=False):
        return
    gc.freeze()
    log.info(
        "Froze %d objects out of the garbage collector's sight ([%s] %s = True): full collections in "
        "this triggerer now walk only what was created after its first Cerebelum trigger started",
        gc.get_freeze_count(),
        CONFIG_SECTION,
        CONFIG_OPTION,
    )
