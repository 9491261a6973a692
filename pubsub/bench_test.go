package pubsub

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// fetchReply returns a kafka_fetch_resp of n records with values of size
// bytes, as a fetch handler builds it.
func fetchReply(n, size int) *pb.PubSubResp {
	msgs := make([]*pb.KafkaMessage, n)
	value := make([]byte, size)
	for i := range msgs {
		msgs[i] = &pb.KafkaMessage{Offset: int64(i), Timestamp: 1_700_000_000_000, Key: []byte("key"), Value: value}
	}
	return &pb.PubSubResp{Sequence: 7, Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{Messages: msgs}}}
}

// replyShapes are fetch replies of typical sizes: a tail (1 record) and a
// full 1 MiB Kafka fetch of small and of large records (a little over 1 MiB
// once encoded as a reply).
var replyShapes = []struct{ records, size int }{{1, 100}, {9600, 100}, {1015, 1024}}

func BenchmarkDecodeRequest(b *testing.B) {
	data, err := proto.Marshal(&pb.PubSubReq{Sequence: 42, Req: &pb.PubSubReq_CmdKafkaFetch{
		CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: "orders", Partition: 3, Offset: 123456789},
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		req := &pb.PubSubReq{}
		if err := proto.Unmarshal(data, req); err != nil {
			b.Fatal(err)
		}
		if commandOf(req) != CmdKafkaFetch {
			b.Fatal("wrong command")
		}
	}
}

func BenchmarkEncodeFetchReply(b *testing.B) {
	for _, shape := range replyShapes {
		b.Run(fmt.Sprintf("%dx%dB", shape.records, shape.size), func(b *testing.B) {
			resp := fetchReply(shape.records, shape.size)
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				var err error
				buf, err = proto.MarshalOptions{}.MarshalAppend(buf[:0], resp)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// discardConn is a connection that takes every write and never reads.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) Close() error                     { return nil }

// BenchmarkWriteReply is the session's write path: encode a reply into a
// pooled buffer, frame it and write it to the socket.
func BenchmarkWriteReply(b *testing.B) {
	for _, shape := range replyShapes {
		b.Run(fmt.Sprintf("%dx%dB", shape.records, shape.size), func(b *testing.B) {
			s := &session{conn: discardConn{}, opts: new(Options{}.withDefaults())}
			resp := fetchReply(shape.records, shape.size)
			b.SetBytes(int64(proto.Size(resp)))
			b.ReportAllocs()
			for b.Loop() {
				if err := s.writeReply(resp, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkServeFetch runs whole requests through a session on a loopback
// TCP connection: read and decode the request, dispatch it to a handler
// that returns a canned fetch reply (building replies is the handler's cost,
// measured in package kafka), encode and write the reply; the client end
// reads the reply frame without decoding it.
func BenchmarkServeFetch(b *testing.B) {
	for _, shape := range replyShapes {
		b.Run(fmt.Sprintf("%dx%dB", shape.records, shape.size), func(b *testing.B) {
			reply := fetchReply(shape.records, shape.size)
			h := HandlerFunc(func(context.Context, *Request) (*pb.PubSubResp, error) { return reply, nil })
			client := serveOnLoopback(b, h)
			req, err := proto.Marshal(fetchReq(1, "t"))
			if err != nil {
				b.Fatal(err)
			}
			frame := ws.MustCompileFrame(ws.MaskFrame(ws.NewBinaryFrame(req)))
			b.SetBytes(int64(proto.Size(reply)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Write(frame); err != nil {
					b.Fatal(err)
				}
				h, err := ws.ReadHeader(client)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyN(io.Discard, client, h.Length); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// serveOnLoopback serves h on the server end of a loopback TCP connection
// and returns the client end.
func serveOnLoopback(b *testing.B, h Handler) net.Conn {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	server := <-accepted
	if server == nil {
		b.Fatal("accept failed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Serve(ctx, server, h, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	b.Cleanup(func() {
		cancel()
		client.Close()
		<-done
	})
	return client
}

// BenchmarkIdleSessionMemory reports the memory one idle session holds, its
// keepalive included (goroutine stacks and heap, net.Pipe excluded as far as
// it can be: the pipes are made before the first measure); b.N is sessions.
func BenchmarkIdleSessionMemory(b *testing.B) {
	opts := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), PingInterval: time.Hour}
	servers, clients := make([]net.Conn, b.N), make([]net.Conn, b.N)
	for i := range servers {
		servers[i], clients[i] = net.Pipe()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := memInUse()
	done := make(chan struct{}, b.N)
	for _, c := range servers {
		go func() {
			Serve(ctx, c, NewMux(), opts)
			done <- struct{}{}
		}()
	}
	// A ping each proves that every session is up and idle again.
	b.ResetTimer()
	for _, c := range clients {
		req, _ := proto.Marshal(ping(1, ""))
		ws.WriteFrame(c, ws.MaskFrame(ws.NewBinaryFrame(req)))
		h, err := ws.ReadHeader(c)
		if err != nil {
			b.Fatal(err)
		}
		io.CopyN(io.Discard, c, h.Length)
	}
	b.StopTimer()
	b.ReportMetric(float64(memInUse()-before)/float64(b.N), "bytes/session")
	for _, c := range clients {
		c.Close()
	}
	for range b.N {
		<-done
	}
}

// memInUse returns the heap and stack memory in use after a collection.
func memInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// BenchmarkPushWrittenAtOnce is a push of a reply encoded once for many
// sessions (one record of 100 B), written at once by its pusher: frame it
// and make one non-blocking write to a loopback TCP socket, whose other
// end a goroutine drains. This is the path of a record pushed to a
// subscriber at the end of its partition.
func BenchmarkPushWrittenAtOnce(b *testing.B) {
	srv, cli := tcpPair(b)
	defer srv.Close()
	defer cli.Close()
	go io.Copy(io.Discard, cli)
	s := &session{conn: srv, raw: rawConnOf(srv), opts: new(Options{}.withDefaults())}
	resp := fetchReply(1, 100)
	resp.Sequence = 0
	e := EncodeBody(marshalled{resp})
	f := pushFrame{shared: e, seq: 7, size: sequenceSize(7) + e.Len()}
	b.ReportAllocs()
	for b.Loop() {
		s.lastPushWrite.Store(0) // no push written within coalesceWindow
		rest, ok := s.writeNow(f)
		for !ok { // the socket is full: the reader catches up
			runtime.Gosched()
			rest, ok = s.writeNow(f)
		}
		if rest != nil {
			if _, err := srv.Write(*rest); err != nil {
				b.Fatal(err)
			}
			putBuf(rest)
		}
	}
}
