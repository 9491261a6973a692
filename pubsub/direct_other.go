//go:build !unix

package pubsub

import "syscall"

// writeNonBlocking writes nothing where writes cannot be made without
// waiting: pushes are queued.
func writeNonBlocking(syscall.RawConn, []byte) int { return 0 }
