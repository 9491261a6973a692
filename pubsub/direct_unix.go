//go:build unix

package pubsub

import "syscall"

// writeNonBlocking writes what the socket takes of b at once, without
// waiting for room: the bytes written, 0 when it took none or failed (a
// queued write then meets the failure).
func writeNonBlocking(rc syscall.RawConn, b []byte) int {
	n := 0
	err := rc.Write(func(fd uintptr) bool {
		var err error
		if n, err = syscall.Write(int(fd), b); err != nil {
			n = 0
		}
		return true // never wait
	})
	if err != nil {
		return 0
	}
	return n
}
