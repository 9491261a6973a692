package netpoll

import (
	"errors"
	"net"
	"runtime"
	"testing"
	"time"
)

func tcpPair(t *testing.T) (srv, cli net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if cli, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if srv, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); cli.Close() })
	return srv, cli
}

func awaitFire(t *testing.T, fired <-chan struct{}) {
	t.Helper()
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not fire")
	}
}

func TestWatchFiresOncePerArm(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the poller is Linux's epoll")
	}
	srv, cli := tcpPair(t)
	fired := make(chan struct{}, 4)
	w, err := New(srv, func() { fired <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	cli.Write([]byte("x"))
	awaitFire(t, fired)
	// Input left unread fires again at once on the next Arm.
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	awaitFire(t, fired)
	buf := make([]byte, 1)
	if _, err := srv.Read(buf); err != nil {
		t.Fatal(err)
	}
	// A hang-up fires too.
	if err := w.Arm(); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	awaitFire(t, fired)
	if len(fired) != 0 {
		t.Fatalf("%d fires more than arms", len(fired))
	}
}

func TestArmFailsOnceClosed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the poller is Linux's epoll")
	}
	srv, _ := tcpPair(t)
	w, err := New(srv, func() {})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if err := w.Arm(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Arm on a closed connection: %v, want ErrClosed", err)
	}
	w.Close()
	if err := w.Arm(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Arm on a closed watch: %v, want ErrClosed", err)
	}
}

func TestConnectionWithoutDescriptorIsUnsupported(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := New(a, func() {}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("New on net.Pipe: %v, want ErrUnsupported", err)
	}
}
