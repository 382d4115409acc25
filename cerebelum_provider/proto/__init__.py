"""Generated protobuf and gRPC modules for ``cerebelum.worker.WorkerService``.

Everything here except this file is written by ``make protos`` (scripts/generate_protos.py)
from protos/cerebelum/worker/worker_service.proto. Do not edit by hand.
"""
