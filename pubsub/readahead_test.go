package pubsub

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"testing"
)

// TestReadAheadDeliversTheStreamUnchanged reads a stream that arrives in
// chunks of any size with reads of any size, below, at and above the
// read-ahead's size.
func TestReadAheadDeliversTheStreamUnchanged(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	stream := make([]byte, 64<<10)
	for i := range stream {
		stream[i] = byte(rng.Uint32())
	}
	server, client := net.Pipe()
	defer server.Close()
	go func() {
		defer client.Close()
		chunks := rand.New(rand.NewPCG(3, 4))
		for rest := stream; len(rest) > 0; {
			n := min(len(rest), 1+chunks.IntN(3*readAheadSize))
			if _, err := client.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
	}()
	in := &readAhead{conn: server}
	var got []byte
	for len(got) < len(stream) {
		p := make([]byte, rng.IntN(3*readAheadSize))
		n, err := in.Read(p)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, p[:n]...)
	}
	if !bytes.Equal(got, stream) {
		t.Fatal("the stream read back differs")
	}
	if n, err := in.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("at the end: %d, %v; want EOF", n, err)
	}
}
