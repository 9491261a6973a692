//go:build unix

package pubsub

import "syscall"

// writeNonBlocking writes what the socket takes of w's frame at once,
// without waiting for room: the bytes written, 0 when it took none or
// failed (a queued write then meets the failure).
func writeNonBlocking(rc syscall.RawConn, w *directWrite) int {
	if w.write == nil {
		w.write = w.writeFD
	}
	w.took = 0
	if rc.Write(w.write) != nil {
		return 0
	}
	return w.took
}

// writeFD writes w's frame to fd once, never waiting for room.
func (w *directWrite) writeFD(fd uintptr) bool {
	n, err := syscall.Write(int(fd), w.b)
	if err == nil {
		w.took = n
	}
	return true // never wait
}
