"""gRPC server reflection under both names clients use: ``v1alpha`` and ``v1``.

    enable_reflection(server, ("attestd.v1.Agent", "grpc.health.v1.Health"))

Used by both daemons: the agent (a ``grpc.aio`` server) and the verifier service
(a threaded ``grpc`` server); each gets the servicer of its own kind.

grpcio-reflection (up to 1.85 at least) ships only ``grpc.reflection.v1alpha``,
while newer clients (grpcurl, Postman, grpc-java) ask ``grpc.reflection.v1``
first or only. The two protocols are the same messages with the same field
numbers under another package name (the v1 proto is a copy of v1alpha), so the
one v1alpha servicer answers both: its messages are byte-for-byte v1 messages.
The v1 file descriptor is added to the pool too, so clients can describe the
v1 service itself.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def enable_reflection(server: grpc.Server | grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serve reflection of ``service_names`` (and of both reflection services) on ``server``."""
    _add_v1_descriptor()
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer: reflection.ReflectionServicer | reflection.aio.ReflectionServicer
    if isinstance(server, grpc.aio.Server):
        servicer = reflection.aio.ReflectionServicer(names)
    else:
        servicer = reflection.ReflectionServicer(names)
    v1alpha = grpc.method_handlers_generic_handler(
        V1ALPHA_SERVICE_NAME, {"ServerReflectionInfo": _handler(servicer)}
    )
    v1 = grpc.method_handlers_generic_handler(
        V1_SERVICE_NAME, {"ServerReflectionInfo": _handler(servicer)}
    )
    server.add_generic_rpc_handlers((v1alpha, v1))


def _handler(
    servicer: reflection.ReflectionServicer | reflection.aio.ReflectionServicer,
) -> grpc.RpcMethodHandler:
    return grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )


def _add_v1_descriptor() -> None:
    """Add the v1 reflection proto to the default pool, derived from v1alpha's."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
        return  # already there (a later grpcio-reflection, or a second server)
    except KeyError:
        pass
    v1 = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(v1)
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    v1.name = _V1_FILE
    v1.package = "grpc.reflection.v1"
    v1.ClearField("options")  # v1alpha's are deprecation and language package options
    for message in v1.message_type:
        for field in message.field:
            if field.HasField("type_name"):  # message fields only; scalars have none
                field.type_name = field.type_name.replace(old, new)
    for service in v1.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.Add(v1)
