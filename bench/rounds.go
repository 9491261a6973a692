package bench

import (
	"slices"
	"time"
)

// ratioSpread sums up ratios measured once per round: their median (the
// mean of the two middle ones for an even count) and their extremes.
type ratioSpread struct {
	median, min, max float64
}

// spreadOf is the spread of ratios, which it leaves in their order; no
// ratio gives zeros.
func spreadOf(ratios []float64) ratioSpread {
	if len(ratios) == 0 {
		return ratioSpread{}
	}
	sorted := slices.Clone(ratios)
	slices.Sort(sorted)
	mid := len(sorted) / 2
	median := sorted[mid]
	if len(sorted)%2 == 0 {
		median = (sorted[mid-1] + sorted[mid]) / 2
	}
	return ratioSpread{median: median, min: sorted[0], max: sorted[len(sorted)-1]}
}

// sharedRounds gathers the reads of one reader count over the rounds of a
// real-data run. A ratio to direct is paired: the gateway's read over the
// direct read of the same round, the two run back to back under the same
// load of the machine, so that a load hitting one read of a round moves
// that round's ratio only, and the median over the rounds leaves it out.
type sharedRounds struct {
	// deliveries is the records one read delivers to all readers together.
	deliveries int
	// direct, gateway and warm are the fastest read of each kind.
	direct, gateway, warm time.Duration
	// cost and fetchBytes are the gateway's over its fastest first read.
	cost       gatewayCost
	fetchBytes int64
	// ofDirect and warmOfDirect hold one ratio per round.
	ofDirect, warmOfDirect []float64
}

// add records one round: the direct read, the gateway's first read (with
// its cost and Kafka fetch bytes) and its read again.
func (s *sharedRounds) add(direct, gateway, warm time.Duration, cost gatewayCost, fetchBytes int64) {
	first := len(s.ofDirect) == 0
	if first || direct < s.direct {
		s.direct = direct
	}
	if first || gateway < s.gateway {
		s.gateway, s.cost, s.fetchBytes = gateway, cost, fetchBytes
	}
	if first || warm < s.warm {
		s.warm = warm
	}
	// Rates of the same deliveries: gateway/direct records/s is the
	// direct read's duration over the gateway's.
	s.ofDirect = append(s.ofDirect, direct.Seconds()/gateway.Seconds())
	s.warmOfDirect = append(s.warmOfDirect, direct.Seconds()/warm.Seconds())
}

// row is the SharedRow of readers readers: the fastest reads' rates and
// durations, and the spread of the per-round ratios.
func (s *sharedRounds) row(readers int) SharedRow {
	records := float64(s.deliveries)
	of, warm := spreadOf(s.ofDirect), spreadOf(s.warmOfDirect)
	return SharedRow{
		Readers:             readers,
		DirectPerS:          records / s.direct.Seconds(),
		GatewayPerS:         records / s.gateway.Seconds(),
		OfDirect:            of.median,
		OfDirectMin:         of.min,
		OfDirectMax:         of.max,
		WarmPerS:            records / s.warm.Seconds(),
		WarmOfDirect:        warm.median,
		WarmOfDirectMin:     warm.min,
		WarmOfDirectMax:     warm.max,
		DirectSeconds:       s.direct.Seconds(),
		GatewaySeconds:      s.gateway.Seconds(),
		FetchBytesPerRecord: float64(s.fetchBytes) / records,
		Cost:                s.cost,
	}
}
