"""What this package knows of Cerebelum Core, shared by the client and the Airflow side.

Imports nothing, so a DAG file's imports (the hooks) and the client can both use it.
"""

#: The Core release this package was tested against, and whose bugs its messages describe.
TESTED_CORE_RELEASE = "be56c90"
#: Core's own gRPC port: an address without one (``host``, ``grpc://host``) dials it.
CORE_DEFAULT_GRPC_PORT = 9090
#: Core's own REST (Phoenix) port: an Airflow connection naming no port speaks HTTP to it.
CORE_DEFAULT_HTTP_PORT = 4001
#: Deadline of one call attempt to Core, in seconds, when the caller or connection sets none.
DEFAULT_CALL_TIMEOUT = 10.0
