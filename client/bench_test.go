package client

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/internal/wstest"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// BenchmarkFetch is the client's side of a fetch: encode and send the
// request, read the reply frame, decode it and hand it to the caller. The
// server end answers every request with the same pre-encoded reply.
func BenchmarkFetch(b *testing.B) {
	for _, shape := range []struct{ records, size int }{{1, 100}, {8000, 100}, {1000, 1024}} {
		b.Run(fmt.Sprintf("%dx%dB", shape.records, shape.size), func(b *testing.B) {
			msgs := make([]*pb.KafkaMessage, shape.records)
			for i := range msgs {
				msgs[i] = &pb.KafkaMessage{Offset: int64(i), Timestamp: 1_700_000_000_000, Value: make([]byte, shape.size)}
			}
			body, err := proto.Marshal(&pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{Messages: msgs}}})
			if err != nil {
				b.Fatal(err)
			}
			c := New(cannedServer(b, body), nil)
			b.Cleanup(func() { c.Close() })
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				got, err := c.Fetch(context.Background(), "t", 0, 0)
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != shape.records {
					b.Fatalf("%d records, want %d", len(got), shape.records)
				}
			}
		})
	}
}

// cannedServer serves the server end of a loopback TCP connection: each
// request frame is answered with body prefixed by the request's sequence
// (field 1, which protobuf decoders accept in any position). It returns the
// client end.
func cannedServer(b *testing.B, body []byte) net.Conn {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		var req pb.PubSubReq
		for {
			f, err := wstest.ReadFrame(conn, 1<<20)
			if err != nil || f.Header.OpCode == ws.OpClose {
				return
			}
			ws.Cipher(f.Payload, f.Header.Mask, 0)
			if proto.Unmarshal(f.Payload, &req) != nil {
				return
			}
			seq := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(req.GetSequence()))
			var header bytes.Buffer
			ws.WriteHeader(&header, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(seq) + len(body))})
			frame := net.Buffers{header.Bytes(), seq, body}
			if _, err := frame.WriteTo(conn); err != nil {
				return
			}
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	return conn
}
