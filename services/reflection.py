"""Server reflection under both names clients use: `grpc.reflection.v1` and `v1alpha`.

grpcio-reflection 1.85 ships only v1alpha, while grpcurl and newer clients ask v1 first. The
two protocols are the same messages under another package, so one servicer answers both: v1
calls are parsed with the v1alpha classes (the bytes are identical) by a generic handler. The
v1 file descriptor is derived from v1alpha's and added to the default pool, so a client can
describe the v1 service itself too. No stubs are generated for it, hence nothing to keep in
step with grpcio-tools.

    enable_reflection([SERVICE_NAME, health.SERVICE_NAME], server)   # a grpc.aio.Server
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as alpha
from grpc_reflection.v1alpha import reflection_pb2_grpc as alpha_grpc

ALPHA_PACKAGE = "grpc.reflection.v1alpha"
V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"  # the name upstream gives the v1 file
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
ALPHA_SERVICE_NAME = reflection.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection


def v1_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """v1alpha's reflection.proto renamed to v1 (package, file name, type references)."""
    proto = descriptor_pb2.FileDescriptorProto()
    alpha.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = V1_FILE, V1_PACKAGE
    proto.options.Clear()  # v1alpha's are `deprecated` and name v1alpha's Java/Go packages
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"

    def rename(type_name: str) -> str:
        return type_name.replace(f".{ALPHA_PACKAGE}.", f".{V1_PACKAGE}.")

    for message in proto.message_type:
        for fld in message.field:
            if fld.type_name:  # message fields only: setting "" would mark a scalar as typed
                fld.type_name = rename(fld.type_name)
    for method in proto.service[0].method:
        method.input_type = rename(method.input_type)
        method.output_type = rename(method.output_type)
    return proto


def register_v1_descriptor(pool: descriptor_pool.DescriptorPool | None = None) -> None:
    """Add the v1 file to `pool` (default: the process's), once."""
    pool = pool or descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.AddSerializedFile(v1_file_descriptor().SerializeToString())


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Reflection v1 and v1alpha on `server`, listing `service_names` and both reflections."""
    register_v1_descriptor()
    names = (*service_names, V1_SERVICE_NAME, ALPHA_SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names)
    alpha_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=alpha.ServerReflectionRequest.FromString,
        response_serializer=alpha.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": handler}),)
    )
