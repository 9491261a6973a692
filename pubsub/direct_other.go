//go:build !unix

package pubsub

import "syscall"

// writeNonBlocking writes nothing where writes cannot be made without
// waiting: pushes are queued.
func writeNonBlocking(syscall.RawConn, *directWrite) int { return 0 }
