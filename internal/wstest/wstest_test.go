package wstest

import (
	"bytes"
	"testing"

	"github.com/gobwas/ws"
)

func TestReadFrameReadsWithinTheBoundAndRefusesBeyondIt(t *testing.T) {
	var stream bytes.Buffer
	ws.WriteFrame(&stream, ws.NewBinaryFrame([]byte("hello")))
	ws.WriteFrame(&stream, ws.NewBinaryFrame(make([]byte, 1<<20)))
	f, err := ReadFrame(&stream, 1024)
	if err != nil || f.Header.OpCode != ws.OpBinary || string(f.Payload) != "hello" {
		t.Fatalf("got %v %q, %v; want binary hello", f.Header.OpCode, f.Payload, err)
	}
	before := stream.Len()
	if _, err := ReadFrame(&stream, 1024); err == nil {
		t.Fatal("a 1 MiB frame read under a bound of 1024 bytes")
	}
	if read := before - stream.Len(); read > ws.MaxHeaderSize {
		t.Fatalf("read %d bytes of a refused frame, want only its header", read)
	}
}
