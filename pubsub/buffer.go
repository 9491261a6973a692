package pubsub

import "sync"

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func getBuf() *[]byte {
	b := bufPool.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// maxPooledBuffer is the largest buffer the pool keeps: a full fetch reply
// (1 MiB of records by default, a little more once encoded) must be reused,
// not allocated anew for every fetch.
const maxPooledBuffer = 4 << 20

// putBuf returns b to the pool unless it grew too large to keep.
func putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuffer {
		bufPool.Put(b)
	}
}

// grow extends b by n bytes, reallocating when needed.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, max(2*cap(b), len(b)+n))
	copy(nb, b)
	return nb
}
