"""``CerebelumExecutionLink``: the "Cerebelum execution" button on a task, when the connection has
a ``ui_url``.

Airflow 3 computes extra links in the worker when a task finishes (and stores the result in
XCom for the UI), so the link can read the connection there. The task pushes the execution id
to XCom under :data:`EXECUTION_ID_XCOM_KEY` as soon as it knows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XCom key under which the sensor and the operators publish the execution they work on.
EXECUTION_ID_XCOM_KEY = "execution_id"


class CerebelumExecutionLink(BaseOperatorLink):
    """Link to the execution in Core's UI: the connection's ``ui_url`` with ``{execution_id}`` filled in.

    Returns "" when the connection sets no ``ui_url`` or the task published no execution id.
    The operator must have a ``cerebelum_conn_id`` attribute.
    """

    name = "Cerebelum execution"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The URL, or "" when there is nothing to link to."""
        from airflow.sdk.execution_time.xcom import XCom

        execution_id = XCom.get_value(ti_key=ti_key, key=EXECUTION_ID_XCOM_KEY)
        conn_id = getattr(operator, "cerebelum_conn_id", None)
        if not execution_id or not conn_id:
            return ""
        from cerebelum_provider.hooks.cerebelum import CerebelumHook

        return CerebelumHook(conn_id).execution_url(str(execution_id)) or ""


def publish_execution_id(context: Any, execution_id: str) -> None:
    """Push ``execution_id`` to XCom (key ``execution_id``) so the link and downstream tasks find it."""
    context["ti"].xcom_push(key=EXECUTION_ID_XCOM_KEY, value=execution_id)
