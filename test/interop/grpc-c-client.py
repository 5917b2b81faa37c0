#!/usr/bin/python3
"""A generic gRPC client on gRPC C-core (Debian's python3-grpcio), driven by JSON lines on stdin, for interop tests
of berth's server transport. The same protocol as grpc-go-client/main.go; messages stay opaque protobuf bytes.

Usage: /usr/bin/python3 grpc-c-client.py SOCKET_PATH   (Debian's python3: python3-grpcio installs for it alone)

stdin, one request a line:
  {"id": 1, "method": "/runtime.v1.RuntimeService/Version", "request": "<base64>", "timeoutMs": 2000,
   "stream": false, "cancelAfterMs": 0, "maxMessages": 0}
stdout, one reply a line, in completion order:
  {"id": 1, "code": 0, "message": "", "responses": ["<base64>", ...]}

One channel (one connection) serves every request; requests run concurrently on a thread pool. The process exits once
stdin closes and the requests in flight have answered.
"""
import base64
import concurrent.futures
import json
import sys
import threading

import grpc

CANCELLED = grpc.StatusCode.CANCELLED.value[0]


def main():
    if len(sys.argv) != 2:
        print('usage: grpc-c-client.py SOCKET_PATH', file=sys.stderr)
        sys.exit(2)
    channel = grpc.insecure_channel('unix:' + sys.argv[1], options=[
        ('grpc.max_receive_message_length', 64 << 20),
        ('grpc.max_send_message_length', 64 << 20),
        # C-core honours http_proxy from the environment; a test must never go through one.
        ('grpc.enable_http_proxy', 0),
    ])
    out_lock = threading.Lock()

    def write(reply):
        line = json.dumps(reply, separators=(',', ':')) + '\n'
        with out_lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def run(req):
        try:
            reply = call(channel, req)
        except Exception as err:  # a bug here must still answer, or the driver waits forever
            reply = {'code': grpc.StatusCode.UNKNOWN.value[0], 'message': f'client error: {err!r}', 'responses': []}
        reply['id'] = req['id']
        write(reply)

    # Blocking calls, one thread each: enough workers that the tests' bursts really run at once.
    with concurrent.futures.ThreadPoolExecutor(max_workers=256) as pool:
        for raw in sys.stdin.buffer:
            if not raw.strip():
                continue
            try:
                req = json.loads(raw)
            except ValueError as err:
                # A broken line is a bug in the driver: fail loudly rather than leave a call unanswered.
                print(f'bad request line {raw!r}: {err}', file=sys.stderr)
                sys.exit(2)
            pool.submit(run, req)
    channel.close()


def call(channel, req):
    request = base64.b64decode(req.get('request') or '')
    timeout_ms = req.get('timeoutMs') or 0
    timeout = timeout_ms / 1000 if timeout_ms > 0 else None
    cancel_after_ms = req.get('cancelAfterMs') or 0
    max_messages = req.get('maxMessages') or 0
    responses = []

    # No serializers: requests and responses pass through as bytes.
    if not req.get('stream'):
        future = channel.unary_unary(req['method']).future(request, timeout=timeout)
        timer = start_timer(cancel_after_ms, future.cancel)
        try:
            responses.append(future.result())
            return ok(responses)
        except grpc.FutureCancelledError:
            return {'code': CANCELLED, 'message': 'cancelled by the client', 'responses': []}
        except grpc.RpcError as err:
            return failed(err, responses)
        finally:
            if timer:
                timer.cancel()

    stream = channel.unary_stream(req['method'])(request, timeout=timeout)
    timer = start_timer(cancel_after_ms, stream.cancel)
    try:
        for msg in stream:
            responses.append(msg)
            if max_messages and len(responses) >= max_messages:
                stream.cancel()
                return {'code': CANCELLED, 'message': f'cancelled by the client after {len(responses)} messages',
                        'responses': encode(responses)}
        return ok(responses)
    except grpc.RpcError as err:
        return failed(err, responses)
    finally:
        if timer:
            timer.cancel()


def start_timer(ms, fn):
    if ms <= 0:
        return None
    timer = threading.Timer(ms / 1000, fn)
    timer.daemon = True
    timer.start()
    return timer


def ok(responses):
    return {'code': 0, 'message': '', 'responses': encode(responses)}


def failed(err, responses):
    # A stream's RpcError is also its Call: code() and details() give the final status.
    code = err.code() if hasattr(err, 'code') else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, 'details') else str(err)
    return {'code': code.value[0], 'message': details or '', 'responses': encode(responses)}


def encode(responses):
    return [base64.b64encode(r).decode('ascii') for r in responses]


if __name__ == '__main__':
    main()
