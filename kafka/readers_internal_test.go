package kafka

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestReaderIndexFindsTheLowestLiveReader: under random moves of readers
// (many at one offset), searches from random offsets and time passing,
// the index answers what a scan of every reader answers: the lowest
// offset from the search's on of a reader seen within readerTTL.
func TestReaderIndexFindsTheLowestLiveReader(t *testing.T) {
	type seenAt struct {
		offset int64
		seen   time.Time
	}
	rng := rand.New(rand.NewPCG(1, 2))
	lanes := make([]*brokerLane, 200)
	for i := range lanes {
		lanes[i] = new(brokerLane)
	}
	var x readerIndex
	model := make(map[*brokerLane]seenAt)
	now := time.Unix(1_000_000, 0)
	for step := range 20000 {
		now = now.Add(time.Duration(rng.IntN(3)) * time.Millisecond)
		if rng.IntN(2) == 0 {
			lane, offset := lanes[rng.IntN(len(lanes))], rng.Int64N(50)
			x.note(lane, offset, now)
			model[lane] = seenAt{offset, now}
			continue
		}
		from := rng.Int64N(60)
		want, wantOK := int64(0), false
		for _, r := range model {
			if now.Sub(r.seen) <= readerTTL && r.offset >= from && (!wantOK || r.offset < want) {
				want, wantOK = r.offset, true
			}
		}
		got, ok := x.lowestFrom(from, now)
		if got != want || ok != wantOK {
			t.Fatalf("step %d: lowest from %d is %d (%v), want %d (%v)", step, from, got, ok, want, wantOK)
		}
	}
}

// TestReaderIndexForgetsQuietReaders: readers not seen within readerTTL are
// dropped by the next search after a readerTTL, those behind it too (a
// search never meets them), so the index holds only the sessions reading
// lately.
func TestReaderIndexForgetsQuietReaders(t *testing.T) {
	var x readerIndex
	now := time.Unix(1_000_000, 0)
	for i := range 100 {
		x.note(new(brokerLane), int64(i), now)
	}
	if low, ok := x.lowestFrom(90, now); !ok || low != 90 {
		t.Fatalf("lowest from 90: %d (%v), want 90", low, ok)
	}
	live := new(brokerLane)
	now = now.Add(readerTTL + time.Millisecond)
	x.note(live, 95, now)
	if low, ok := x.lowestFrom(90, now); !ok || low != 95 {
		t.Fatalf("lowest from 90 once the others went quiet: %d (%v), want 95", low, ok)
	}
	if n := x.len(); n != 1 {
		t.Fatalf("%d readers held, want the one seen lately", n)
	}
	if n := x.byOffset.Len(); n != 1 {
		t.Fatalf("%d readers in offset order, want 1", n)
	}
}

// BenchmarkRoomAheadWithManyReaders: the cost of asking whether a session
// may read ahead, which a fetch loop does at every reply it reads ahead
// of, under the cache's lock, with 1 to 10,000 fetch loops reading one
// partition whose window holds 32 chunks.
func BenchmarkRoomAheadWithManyReaders(b *testing.B) {
	for _, readers := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			rc := newRecordCache(1<<30, 1<<30)
			for first := int64(0); first < 320; first += 10 {
				recs := make([]int64, 10)
				for i := range recs {
					recs[i] = first + int64(i)
				}
				rc.insert(p0, unknownEpoch, run{first: first, next: first + 10, records: records(recs...)})
			}
			lanes := make([]*brokerLane, readers)
			// read notes every reader anew, so that none goes quiet
			// however long the benchmark runs.
			read := func() {
				for i, lane := range lanes {
					rc.reading(p0, &reply{reader: lane, next: int64(i % 320)})
				}
			}
			for i := range lanes {
				lanes[i] = new(brokerLane)
			}
			read()
			asked := 0
			for b.Loop() {
				if asked++; asked%1000 == 0 {
					b.StopTimer()
					read()
					b.StartTimer()
				}
				rc.roomAhead(p0, 320, 1<<20)
			}
		})
	}
}

// BenchmarkNoteReading: the cost of noting where a session reads next,
// which every read of a fetch loop does under the cache's lock, with 10,000
// fetch loops moving on through one partition in turn.
func BenchmarkNoteReading(b *testing.B) {
	rc := newRecordCache(1<<30, 1<<30)
	rc.insert(p0, unknownEpoch, run{first: 0, next: 10, records: records(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)})
	lanes := make([]*brokerLane, 10000)
	for i := range lanes {
		lanes[i] = new(brokerLane)
	}
	out := &reply{}
	i := 0
	for b.Loop() {
		out.reader, out.next = lanes[i%len(lanes)], int64(i/len(lanes))
		rc.reading(p0, out)
		i++
	}
}
