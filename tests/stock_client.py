#!/usr/bin/env python3
"""A client in another language, with only stock gRPC tooling: Python's grpcio and
grpcio-reflection. It has no copy of the .proto file: it discovers the API through server
reflection (grpcio-reflection speaks the v1alpha protocol), then lists the metrics, describes
nps, computes NPS with and without group-by, and checks that a score of 11 gets
INVALID_ARGUMENT with a google.rpc.BadRequest field violation naming the row.

Run against a server (exits non-zero on the first failed check):

    python3 -m venv /tmp/stock && /tmp/stock/bin/pip install grpcio grpcio-reflection googleapis-common-protos
    cargo build --workspace && (target/debug/mittari serve &) && /tmp/stock/bin/python tests/stock_client.py 127.0.0.1:50051
"""
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.rpc import error_details_pb2, status_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "mittari.v1.MetricService"


def main(address: str) -> None:
    channel = grpc.insecure_channel(address)
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    service = pool.FindServiceByName(SERVICE)

    def call(method_name: str, request: dict):
        method = service.methods_by_name[method_name]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        stub = channel.unary_unary(
            f"/{SERVICE}/{method_name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        return json_format.MessageToDict(
            stub(json_format.ParseDict(request, request_class()), timeout=10),
            preserving_proto_field_name=True,
        )

    names = [m["name"] for m in call("ListMetrics", {})["metrics"]]
    assert "nps" in names, names
    print("ListMetrics:", names)

    nps = call("DescribeMetric", {"name": "nps"})["metric"]
    assert nps["inputs"][0]["name"] == "score", nps
    print("DescribeMetric nps: inputs", [c["name"] for c in nps["inputs"]])

    table = {
        "columns": [
            {"name": "score", "int64_values": {"values": [10, 9, 9, 8, 7, 6, 5, 3, 10, 0]}},
            {"name": "region", "string_values": {"values": ["north"] * 5 + ["south"] * 5}},
        ]
    }
    whole = call("Compute", {"metric": "nps", "input": table})
    results = {s["name"]: s.get("value", 0.0) for s in whole["results"]["scalars"]}
    assert results["nps"] == 0.0 and results["responses"] == 10.0, results
    print("Compute nps:", results["nps"], "se", results["standard_error"])

    grouped = call("Compute", {"metric": "nps", "input": table, "group_by": ["region"]})
    columns = grouped["grouped"]
    regions = columns["keys"][0]["string_values"]["values"]
    nps_column = next(c for c in columns["scalars"] if c["name"] == "nps")
    by_region = dict(zip(regions, nps_column["values"]))
    assert by_region == {"north": 60.0, "south": -60.0}, by_region
    print("Compute nps by region:", by_region)

    bad = {"columns": [{"name": "score", "int64_values": {"values": [10, 11]}}]}
    try:
        call("Compute", {"metric": "nps", "input": bad})
        raise AssertionError("a score of 11 was accepted")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.code()
        details = dict(error.trailing_metadata())["grpc-status-details-bin"]
        status = status_pb2.Status.FromString(details)
        violations = []
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations += [(v.field, v.description) for v in bad_request.field_violations]
        assert violations and violations[0][0] == "input.score[1]", violations
        print("score 11:", error.code().name, violations[0])
    print("all checks passed")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
