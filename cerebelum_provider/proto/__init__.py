"""Generated protobuf and gRPC modules for ``cerebelum.worker.WorkerService``.

The ``*_pb2*`` modules are written by ``make protos`` (scripts/generate_protos.py) from
protos/cerebelum/worker/worker_service.proto; do not edit them by hand. They register in
_pool.py's descriptor pool, not protobuf's default one, so they load next to the published
cerebelum-sdk, which registers the same ``cerebelum.worker`` symbols there. This file and
_pool.py are written by hand.
"""
