#!/usr/bin/env python3
"""An authpulse agent in Python: an independent gRPC implementation (grpcio,
the C core) talking to a real coordinator over mTLS.

Stubs are generated from proto/proto/authpulse/v1/agent.proto at run time
with grpcio-tools, so the test follows the .proto, not our Rust code. The
client presents an agent certificate, sends a Hello and a ResultBatch, and
checks that the coordinator answers with an Ack (first), an Assignment, and
an Ack covering every sequence number it sent.

Run by tests/tests/python_grpc.rs with the venv tests/run builds:
  target/test-venv/bin/python tests/python/grpc_client_test.py \
      --target 127.0.0.1:7070 --ca ca.pem --cert agent.pem --key agent.key \
      --agent-id py-agent --region eu-west --expect-probe eu-health

Exit status 0 when every check passed; 1 with the reason otherwise.
"""
import argparse
import importlib
import os
import queue
import sys
import tempfile
import time


def generate_stubs(proto_root, out_dir):
    from grpc_tools import protoc
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        "authpulse/v1/agent.proto",
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed for {proto_root}/authpulse/v1/agent.proto")
    sys.path.insert(0, out_dir)
    pb = importlib.import_module("authpulse.v1.agent_pb2")
    rpc = importlib.import_module("authpulse.v1.agent_pb2_grpc")
    return pb, rpc


def read(path):
    with open(path, "rb") as f:
        return f.read()


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="host:port of the coordinator's gRPC port")
    p.add_argument("--ca", required=True, help="CA that signed the coordinator's certificate")
    p.add_argument("--cert", required=True, help="agent client certificate (PEM)")
    p.add_argument("--key", required=True, help="its private key (PEM)")
    p.add_argument("--agent-id", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--server-name", default="localhost", help="name in the coordinator's certificate")
    p.add_argument("--expect-probe", help="a probe id the assignment must contain")
    p.add_argument("--proto-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto", "proto"))
    p.add_argument("--results", type=int, default=3)
    a = p.parse_args()

    import grpc

    with tempfile.TemporaryDirectory(prefix="authpulse-py-stubs-") as out:
        pb, rpc = generate_stubs(os.path.abspath(a.proto_root), out)

        creds = grpc.ssl_channel_credentials(
            root_certificates=read(a.ca),
            private_key=read(a.key),
            certificate_chain=read(a.cert),
        )
        options = [("grpc.ssl_target_name_override", a.server_name)]
        channel = grpc.secure_channel(a.target, creds, options)
        try:
            grpc.channel_ready_future(channel).result(timeout=15)
        except grpc.FutureTimeoutError:
            fail(f"no TLS channel to {a.target} within 15s")
        stub = rpc.AgentServiceStub(channel)

        outbox = queue.Queue()

        def requests():
            while True:
                msg = outbox.get()
                if msg is None:
                    return
                yield msg

        responses = stub.Connect(requests(), timeout=60)
        now_ms = int(time.time() * 1000)
        outbox.put(pb.AgentMessage(hello=pb.Hello(
            agent_id=a.agent_id,
            region=a.region,
            version="python-grpcio",
            labels={"impl": "grpcio"},
            sent_unix_ms=now_ms,
        )))

        try:
            first = next(responses)
            if first.WhichOneof("msg") != "ack":
                fail(f"the first answer must be an Ack, got {first}")
            second = next(responses)
            if second.WhichOneof("msg") != "assignment":
                fail(f"the second answer must be an Assignment, got {second}")
            ids = [p.id for p in second.assignment.probes]
            if a.expect_probe and a.expect_probe not in ids:
                fail(f"assignment lacks {a.expect_probe}: {ids}")
            if second.assignment.version == 0:
                fail("assignment version is 0")

            start = max(first.ack.acked_seq, first.ack.highest_stored_seq) + 1
            seqs = list(range(start, start + a.results))
            batch = pb.ResultBatch(low_watermark=start)
            for seq in seqs:
                batch.results.append(pb.ProbeResult(
                    agent_id=a.agent_id,
                    seq=seq,
                    probe_id=a.expect_probe or "python-probe",
                    region=a.region,
                    started_unix_ms=now_ms,
                    duration_us=1500,
                    outcome=pb.OUTCOME_SUCCESS,
                    timings=pb.Timings(connect_us=300, ttfb_us=1000, total_us=1500),
                    assignment_version=second.assignment.version,
                ))
            outbox.put(pb.AgentMessage(results=batch))

            acked = 0
            for msg in responses:
                kind = msg.WhichOneof("msg")
                if kind == "reject":
                    fail(f"rejected: {msg.reject.reason}")
                if kind == "ack":
                    acked = msg.ack.acked_seq
                    if acked >= seqs[-1]:
                        break
            else:
                fail("the stream ended before an ack covered the batch")
            if acked < seqs[-1]:
                fail(f"acked {acked}, sent up to {seqs[-1]}")
        except grpc.RpcError as e:
            fail(f"RPC failed: {e.code()} {e.details()}")
        finally:
            outbox.put(None)
            channel.close()

    print(f"ok: hello, assignment {ids} (version {second.assignment.version}), "
          f"seqs {seqs[0]}..{seqs[-1]} acked ({acked}) over mTLS as {a.agent_id}/{a.region}")


if __name__ == "__main__":
    main()
