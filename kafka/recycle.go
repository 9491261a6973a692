package kafka

import "sync"

// A full fetch of small records builds thousands of protocol messages. The
// fetch handler takes them from a pool and gives them back once its reply is
// written (pubsub.Request.AfterReply), instead of leaving a few megabytes to
// the garbage collector per fetch. The records themselves stay in the
// record cache, where other sessions read them too.

// messageSlabs pools the message slabs of fetch replies.
var messageSlabs = sync.Pool{New: func() any { return new(messageSlab) }}

// release clears the slab, so that it holds on to no record's bytes, and
// puts it back into messageSlabs. The messages it held must no longer be
// read.
func (s *messageSlab) release() {
	clear(s.records)
	s.records = s.records[:0]
	clear(s.backing)
	clear(s.headers)
	messageSlabs.Put(s)
}
