#!/usr/bin/env python3
"""A pyarrow client with nothing but pyarrow and grpcio (plus grpcio-reflection): it sends its
table as an Arrow IPC stream (`Table.arrow_ipc`), with no per-value protobuf encoding, and
reads result tables back as Arrow (`result_encoding = TABLE_ENCODING_ARROW_IPC`).

Checks, against a running server (exits non-zero on the first failed check):
- `Compute` of clv over a pyarrow table in the types pyarrow picks (large strings, nanosecond
  timestamps, float64), and its customers table read back with pyarrow;
- `ComputeStream` of the same table in Arrow chunks, with the same result;
- a negative amount in the last chunk: INVALID_ARGUMENT naming `input.amount[row]`;
- a text timestamp that is not ISO 8601: INVALID_ARGUMENT naming its column and row.

    tests/arrow_client.py 127.0.0.1:50051

`bench/arrow_bench.py` imports it to measure the transfer.
"""
import sys

import grpc
import pyarrow as pa
from google.protobuf import descriptor_pool, message_factory
from google.rpc import error_details_pb2, status_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "mittari.v1.MetricService"
OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


class Client:
    """The metric service through reflection, with Arrow tables in and out."""

    def __init__(self, address):
        self.channel = grpc.insecure_channel(address, options=OPTIONS)
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(self.channel))
        self.service = pool.FindServiceByName(SERVICE)
        self.classes = {}
        for method in ("Compute", "ComputeStream"):
            m = self.service.methods_by_name[method]
            self.classes[method] = (
                message_factory.GetMessageClass(m.input_type),
                message_factory.GetMessageClass(m.output_type),
            )
        self.header_class = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("mittari.v1.ComputeStreamHeader")
        )
        self.table_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("mittari.v1.Table"))
        self.arrow_encoding = pool.FindEnumTypeByName("mittari.v1.TableEncoding").values_by_name[
            "TABLE_ENCODING_ARROW_IPC"
        ].number

    def _stub(self, method, streaming):
        request_class, response_class = self.classes[method]
        make = self.channel.stream_unary if streaming else self.channel.unary_unary
        return make(
            f"/{SERVICE}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )

    def compute(self, metric, table, params=None, arrow_results=True, timeout=600):
        """`Compute` with the table as one Arrow IPC stream."""
        request_class, _ = self.classes["Compute"]
        request = request_class(metric=metric, input=self.table_class(arrow_ipc=ipc(table)))
        self._params(request.parameters, params)
        if arrow_results:
            request.result_encoding = self.arrow_encoding
        return self._stub("Compute", False)(request, timeout=timeout)

    def compute_request(self, metric, params, message):
        """`Compute` with a prepared request message (the benchmark's protobuf columns)."""
        self._params(message.parameters, params)
        message.metric = metric
        return self._stub("Compute", False)(message, timeout=600)

    def compute_stream(self, metric, chunks, params=None, arrow_results=True, timeout=600):
        """`ComputeStream` with each chunk an Arrow IPC stream (bytes), the header schemaless."""
        request_class, _ = self.classes["ComputeStream"]
        header = self.header_class(metric=metric)
        self._params(header.parameters, params)
        if arrow_results:
            header.result_encoding = self.arrow_encoding

        def messages():
            yield request_class(header=header)
            for chunk in chunks:
                yield request_class(chunk=self.table_class(arrow_ipc=chunk))

        return self._stub("ComputeStream", True)(messages(), timeout=timeout)

    @staticmethod
    def _params(target, params):
        for key, value in (params or {}).items():
            if isinstance(value, str):
                target[key].string_value = value
            elif isinstance(value, float):
                target[key].double_value = value
            else:
                target[key].int64_value = value


def ipc(table):
    """A table as the bytes of one Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def chunks_of(table, rows):
    """The table as Arrow IPC streams of `rows` rows each."""
    return [ipc(table.slice(offset, rows)) for offset in range(0, table.num_rows, rows)]


def result_table(response, name):
    """A result table of the response, read with pyarrow."""
    table = next(t.table for t in response.results.tables if t.name == name)
    return pa.ipc.open_stream(table.arrow_ipc).read_all()


def scalars(response):
    return {s.name: s.value for s in response.results.scalars}


def violations(error):
    details = dict(error.trailing_metadata())["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(details)
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found += [(v.field, v.description) for v in bad_request.field_violations]
    return found


def expect_invalid(call, field, fragment):
    try:
        call()
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
        found = violations(error)
        assert found and found[0][0] == field and fragment in found[0][1], found
        print(error.code().name, found[0])
        return
    raise AssertionError(f"accepted; expected a violation of {field}")


def transactions():
    """Six transactions of three customers, in the types a pandas-made pyarrow table has."""
    return pa.table(
        {
            "customer_id": pa.array(["a", "a", "b", "c", "c", "c"], type=pa.large_string()),
            "timestamp": pa.array(
                [
                    "2024-01-01T10:00:00",
                    "2024-02-01T10:00:00",
                    "2024-01-15T00:00:00",
                    "2024-01-02T00:00:00",
                    "2024-03-02T00:00:00",
                    "2024-06-30T23:59:59",
                ]
            ).cast(pa.timestamp("ns")),
            "amount": pa.array([10.0, 20.0, 5.5, 1.0, 2.0, 3.0]),
            "note": pa.array(["x"] * 6),
        }
    )


def main(address):
    client = Client(address)
    table = transactions()
    params = {"model": "historic"}

    whole = client.compute("clv", table, params)
    values = scalars(whole)
    assert values["customers"] == 3 and values["revenue"] == 41.5, values
    customers = result_table(whole, "customers").sort_by("customer_id")
    assert customers.column("customer_id").to_pylist() == ["a", "b", "c"], customers
    assert customers.column("revenue").to_pylist() == [30.0, 5.5, 6.0], customers
    print("Compute clv (Arrow in, Arrow out):", values["clv_total"], customers.num_rows, "customers")

    streamed = client.compute_stream("clv", chunks_of(table, 2), params)
    assert scalars(streamed) == values, (scalars(streamed), values)
    print("ComputeStream clv in 3 Arrow chunks: same results")

    negative = table.set_column(2, "amount", pa.array([10.0, 20.0, 5.5, 1.0, 2.0, -3.0]))
    expect_invalid(
        lambda: client.compute_stream("clv", chunks_of(negative, 4), params),
        "input.amount[5]",
        "outside the allowed range",
    )
    texts = table.set_column(
        1, "timestamp", pa.array(["2024-01-01", "2024-01-02", "yesterday", "2024-01-04", "2024-01-05", "2024-01-06"])
    )
    expect_invalid(lambda: client.compute("clv", texts, params), "input.timestamp[2]", "is not an ISO 8601")
    print("all checks passed")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
