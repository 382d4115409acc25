"""Airflow's ``[core] hostname_callable`` for a stack's processes that share one machine but must
be told apart (two triggerers): ``STACK_PROCESS_HOSTNAME`` when set, else the machine's name as
Airflow's default (``socket.getfqdn``) gives it."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("STACK_PROCESS_HOSTNAME") or socket.getfqdn()
