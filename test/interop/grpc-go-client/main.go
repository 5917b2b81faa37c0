// A generic gRPC client on grpc-go (the stack the kubelet and crictl use), driven by JSON lines on stdin, for
// interop tests of berth's server transport. Messages stay opaque protobuf bytes: the test encodes and decodes them.
//
// Usage: grpc-go-client SOCKET_PATH
//
// stdin, one request a line:
//
//	{"id": 1, "method": "/runtime.v1.RuntimeService/Version", "request": "<base64>", "timeoutMs": 2000,
//	 "stream": false, "cancelAfterMs": 0, "maxMessages": 0}
//
// stdout, one reply a line, in completion order:
//
//	{"id": 1, "code": 0, "message": "", "responses": ["<base64>", ...]}
//
// One connection serves every request, as the kubelet's does; requests run concurrently. The process exits once
// stdin closes and the requests in flight have answered.
//
// Built in GOPATH mode against Debian's golang-google-grpc-dev (grpc-go 1.33): see scripts/build-interop.sh.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// bytesCodec passes messages through as raw bytes. Forced per call, it leaves the content-type at the default
// "application/grpc", as the kubelet's generated-code calls send it.
type bytesCodec struct{}

func (bytesCodec) Name() string { return "proto" }

func (bytesCodec) Marshal(v interface{}) ([]byte, error) {
	switch m := v.(type) {
	case []byte:
		return m, nil
	case *[]byte:
		return *m, nil
	default:
		return nil, fmt.Errorf("bytesCodec: cannot marshal %T", v)
	}
}

func (bytesCodec) Unmarshal(data []byte, v interface{}) error {
	m, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("bytesCodec: cannot unmarshal into %T", v)
	}
	// grpc-go may reuse its receive buffer: keep a copy. Never nil: an empty message must encode as "", not null.
	*m = make([]byte, len(data))
	copy(*m, data)
	return nil
}

type request struct {
	ID            int64  `json:"id"`
	Method        string `json:"method"`
	Request       []byte `json:"request"` // base64 in JSON
	TimeoutMs     int64  `json:"timeoutMs"`
	Stream        bool   `json:"stream"`
	CancelAfterMs int64  `json:"cancelAfterMs"`
	MaxMessages   int    `json:"maxMessages"`
}

type reply struct {
	ID        int64    `json:"id"`
	Code      uint32   `json:"code"`
	Message   string   `json:"message"`
	Responses [][]byte `json:"responses"` // base64 in JSON
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: grpc-go-client SOCKET_PATH")
		os.Exit(2)
	}
	socketPath := os.Args[1]
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socketPath)
	}
	// The target only names the :authority; the dialer ignores it. "localhost" is what newer grpc-go sends for unix:.
	conn, err := grpc.Dial("passthrough:///localhost",
		grpc.WithInsecure(),
		grpc.WithContextDialer(dialer),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dial %s: %v\n", socketPath, err)
		os.Exit(1)
	}
	defer conn.Close()

	var outMu sync.Mutex
	out := json.NewEncoder(os.Stdout) // unbuffered: each Encode is one write of one line
	write := func(r reply) {
		if r.Responses == nil {
			r.Responses = [][]byte{}
		}
		outMu.Lock()
		defer outMu.Unlock()
		if err := out.Encode(r); err != nil {
			fmt.Fprintf(os.Stderr, "write reply %d: %v\n", r.ID, err)
			os.Exit(1)
		}
	}

	var wg sync.WaitGroup
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	for {
		line, readErr := in.ReadBytes('\n')
		if len(line) > 0 && !(len(line) == 1 && line[0] == '\n') {
			var req request
			if err := json.Unmarshal(line, &req); err != nil {
				// A broken line is a bug in the driver: fail loudly rather than leave a call unanswered.
				fmt.Fprintf(os.Stderr, "bad request line %q: %v\n", line, err)
				os.Exit(2)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				write(call(conn, req))
			}()
		}
		if readErr == io.EOF {
			break
		}
		if readErr != nil {
			fmt.Fprintf(os.Stderr, "read stdin: %v\n", readErr)
			os.Exit(1)
		}
	}
	wg.Wait()
}

func call(conn *grpc.ClientConn, req request) reply {
	// cancel is the client's own cancellation (cancelAfterMs, maxMessages); the deadline rides on a child context.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if req.TimeoutMs > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, time.Duration(req.TimeoutMs)*time.Millisecond)
		defer stop()
	}
	if req.CancelAfterMs > 0 {
		t := time.AfterFunc(time.Duration(req.CancelAfterMs)*time.Millisecond, cancel)
		defer t.Stop()
	}
	codec := grpc.ForceCodec(bytesCodec{})
	r := reply{ID: req.ID, Responses: [][]byte{}}

	if !req.Stream {
		var res []byte
		err := conn.Invoke(ctx, req.Method, req.Request, &res, codec)
		if err == nil {
			r.Responses = append(r.Responses, res)
		}
		return withStatus(r, err)
	}

	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, req.Method, codec)
	if err != nil {
		return withStatus(r, err)
	}
	if err := cs.SendMsg(req.Request); err != nil && err != io.EOF {
		return withStatus(r, err)
	}
	// io.EOF from SendMsg means the server already ended the call: RecvMsg below reports how.
	if err := cs.CloseSend(); err != nil {
		return withStatus(r, err)
	}
	for {
		var msg []byte
		err := cs.RecvMsg(&msg)
		if err == io.EOF {
			return r // status OK
		}
		if err != nil {
			return withStatus(r, err)
		}
		r.Responses = append(r.Responses, msg)
		if req.MaxMessages > 0 && len(r.Responses) >= req.MaxMessages {
			cancel()
			r.Code = uint32(codes.Canceled)
			r.Message = fmt.Sprintf("cancelled by the client after %d messages", len(r.Responses))
			return r
		}
	}
}

func withStatus(r reply, err error) reply {
	st := status.Convert(err) // nil → OK; a non-status error → UNKNOWN
	r.Code = uint32(st.Code())
	r.Message = st.Message()
	return r
}
