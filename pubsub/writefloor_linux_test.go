package pubsub

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// floorConns is how many subscriber sockets the write floor writes to, one
// push each per round: the subscribers of one partition in the push runs.
const floorConns = 100

// floorFrame is the size of one push of a compact JSON event (about 106 B
// of value, the send time, offsets and framing).
const floorFrame = 150

// floorReaderEnv names, in the environment of a child test process, the
// address whose floorConns connections that process reads.
const floorReaderEnv = "PUBSUB_WRITE_FLOOR_READER"

// BenchmarkWriteFloor is the kernel's share of a push written at once: one
// non-blocking write system call of a small frame to each of floorConns
// loopback sockets whose readers are live, as the direct push write makes
// it, with nothing of the session engine around it. It reports the CPU
// time of the writing thread per write (user and system, from
// RUSAGE_THREAD: on loopback the kernel delivers the segment to the
// reader's socket and wakes the reader inside the writer's call), so that
// the CPU per delivery of the push runs can be split into what the kernel
// takes and what the gateway adds. "syscall" is the bare cost of entering
// and leaving the kernel (getppid), for scale. cpu-ns/op and wall-ns/op
// are per write; ns/op is per round (a write to every socket).
//
//	go test -run '^$' -bench BenchmarkWriteFloor ./pubsub/
func BenchmarkWriteFloor(b *testing.B) {
	b.Run("syscall", func(b *testing.B) {
		measureThreadCPU(b, 1, func() { syscall.Getppid() })
	})
	b.Run("tcp/readers-in-process", func(b *testing.B) {
		fds := tcpFloorConns(b, func(addr string) { go readFloorConns(b, addr) })
		measureThreadCPU(b, len(fds), writeEach(b, fds))
	})
	b.Run("tcp/readers-in-child-process", func(b *testing.B) {
		fds := tcpFloorConns(b, func(addr string) { startFloorReaderProcess(b, addr) })
		measureThreadCPU(b, len(fds), writeEach(b, fds))
	})
	b.Run("unix/readers-in-process", func(b *testing.B) {
		dir, err := os.MkdirTemp("", "floor") // short: a socket path has at most 107 bytes
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		var fds []int
		for i := range floorConns {
			srv, cli := connPair(b, "unix", filepath.Join(dir, strconv.Itoa(i)))
			b.Cleanup(func() { srv.Close() })
			go func() { io.Copy(io.Discard, cli) }()
			fds = append(fds, connFD(b, srv))
		}
		measureThreadCPU(b, len(fds), writeEach(b, fds))
	})
}

// TestWriteFloorReaderProcess is the child process of
// BenchmarkWriteFloor's readers-in-child-process case: it reads
// floorConns connections to the address in floorReaderEnv until they
// close. It does nothing in a test run.
func TestWriteFloorReaderProcess(t *testing.T) {
	addr := os.Getenv(floorReaderEnv)
	if addr == "" {
		t.Skip("the reader process of BenchmarkWriteFloor")
	}
	readFloorConns(t, addr)
}

// writeEach returns a round that writes one frame to each of fds with
// one write system call, as the direct push write does. A socket that has
// no room (its reader fell behind) is written again after a pause, which
// takes no CPU time.
func writeEach(b *testing.B, fds []int) func() {
	frame := make([]byte, floorFrame)
	return func() {
		for _, fd := range fds {
			n, err := syscall.Write(fd, frame)
			for err == syscall.EAGAIN {
				time.Sleep(50 * time.Microsecond)
				n, err = syscall.Write(fd, frame)
			}
			if n != len(frame) {
				b.Fatalf("write took %d of %d bytes: %v", n, len(frame), err)
			}
		}
	}
}

// measureThreadCPU runs round b.N times on one locked thread and reports
// that thread's CPU time per operation (a round does ops operations) as
// cpu-ns/op, beside the wall time.
func measureThreadCPU(b *testing.B, ops int, round func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	round() // the first write of a socket sets up what the others reuse
	b.ResetTimer()
	start := threadCPU(b)
	for b.Loop() {
		round()
	}
	cpu := threadCPU(b) - start
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*ops), "cpu-ns/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ops), "wall-ns/op")
}

// threadCPU returns the user and system CPU time of the calling thread.
func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// tcpFloorConns listens on loopback, has start connect floorConns readers
// to it, and returns the descriptors of the accepted connections (in
// non-blocking mode, as the runtime sets them).
func tcpFloorConns(b *testing.B, start func(addr string)) []int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	start(ln.Addr().String())
	var fds []int
	for range floorConns {
		c, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		fds = append(fds, connFD(b, c))
	}
	return fds
}

// connFD returns the descriptor of a TCP or unix connection.
func connFD(b testing.TB, c net.Conn) int {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	var fd int
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// readFloorConns connects floorConns times to addr and reads every
// connection in a goroutine of its own until it closes.
func readFloorConns(t testing.TB, addr string) {
	done := make(chan struct{}, floorConns)
	for range floorConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		go func() {
			defer c.Close()
			io.Copy(io.Discard, bufio.NewReader(c))
			done <- struct{}{}
		}()
	}
	for range floorConns {
		<-done
	}
}

// startFloorReaderProcess runs the test binary again as the reader
// process of addr; it ends when the benchmark closes its connections.
func startFloorReaderProcess(b *testing.B, addr string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriteFloorReaderProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), floorReaderEnv+"="+addr, "GOMAXPROCS="+strconv.Itoa(runtime.GOMAXPROCS(0)))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(fmt.Errorf("reader process: %w", err))
	}
	b.Cleanup(func() {
		// The benchmark's connections close first (cleanups run last in,
		// first out), and the reader process ends.
		if err := cmd.Wait(); err != nil {
			b.Errorf("reader process: %v", err)
		}
	})
}
