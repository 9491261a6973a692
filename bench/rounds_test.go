package bench

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestSpreadOfRatiosIsMedianMinAndMax(t *testing.T) {
	for _, c := range []struct {
		name   string
		ratios []float64
		want   ratioSpread
	}{
		{"odd count", []float64{0.7, 0.4, 0.9}, ratioSpread{median: 0.7, min: 0.4, max: 0.9}},
		{"even count: mean of the middle two", []float64{0.9, 0.5, 0.6, 0.8}, ratioSpread{median: 0.7, min: 0.5, max: 0.9}},
		{"one round", []float64{0.66}, ratioSpread{median: 0.66, min: 0.66, max: 0.66}},
		{"no round", nil, ratioSpread{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := slices.Clone(c.ratios)
			got := spreadOf(in)
			if !near(got.median, c.want.median) || got.min != c.want.min || got.max != c.want.max {
				t.Errorf("spreadOf(%v) = %+v, want %+v", c.ratios, got, c.want)
			}
			if !slices.Equal(in, c.ratios) {
				t.Errorf("spreadOf reordered its input: %v, was %v", in, c.ratios)
			}
		})
	}
}

func TestSharedRoundsPairEachRoundsReads(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	s := sharedRounds{deliveries: 1000}
	// Round 2's direct read met a load the gateway's did not: taken
	// independently, its fastest gateway read (1.6 s) over round 1's
	// direct read (1 s) would make 0.625; paired, round 2 is the outlier.
	s.add(ms(1000), ms(2000), ms(1250), gatewayCost{CPUPerRecord: 3}, 1000)
	s.add(ms(2000), ms(1600), ms(2500), gatewayCost{CPUPerRecord: 2}, 2000)
	s.add(ms(1200), ms(2000), ms(1200), gatewayCost{CPUPerRecord: 4}, 3000)
	r := s.row(10)
	if r.Readers != 10 || !near(r.OfDirect, 0.6) || !near(r.OfDirectMin, 0.5) || !near(r.OfDirectMax, 1.25) {
		t.Errorf("of direct %v (%v to %v), want the median 0.6 of the rounds' 0.5, 1.25, 0.6", r.OfDirect, r.OfDirectMin, r.OfDirectMax)
	}
	if !near(r.WarmOfDirect, 0.8) || !near(r.WarmOfDirectMin, 0.8) || !near(r.WarmOfDirectMax, 1) {
		t.Errorf("read again of direct %v (%v to %v), want the median 0.8 of the rounds' 0.8, 0.8, 1", r.WarmOfDirect, r.WarmOfDirectMin, r.WarmOfDirectMax)
	}
	if !near(r.DirectPerS, 1000) || !near(r.GatewayPerS, 625) || !near(r.WarmPerS, 1000/1.2) || !near(r.DirectSeconds, 1) || !near(r.GatewaySeconds, 1.6) {
		t.Errorf("row %+v: want the fastest read of each kind", r)
	}
	if r.Cost.CPUPerRecord != 2 || !near(r.FetchBytesPerRecord, 2) {
		t.Errorf("cost %+v, fetch bytes per record %v: want those of the fastest gateway read", r.Cost, r.FetchBytesPerRecord)
	}

	one := sharedRounds{deliveries: 500}
	one.add(ms(500), ms(1000), ms(800), gatewayCost{}, 0)
	r = one.row(1)
	if !near(r.OfDirect, r.GatewayPerS/r.DirectPerS) || r.OfDirectMin != r.OfDirect || r.OfDirectMax != r.OfDirect || !near(r.WarmOfDirect, 0.625) || r.WarmOfDirectMin != r.WarmOfDirect || r.WarmOfDirectMax != r.WarmOfDirect {
		t.Errorf("one round %+v: want its ratios as median, min and max", r)
	}
}

func TestRealDataReportShowsTheSpreadOfTheRounds(t *testing.T) {
	row := SharedRow{Readers: 1, DirectPerS: 1000, GatewayPerS: 700, OfDirect: 0.70, OfDirectMin: 0.66, OfDirectMax: 0.73, WarmPerS: 900, WarmOfDirect: 0.9, WarmOfDirectMin: 0.85, WarmOfDirectMax: 0.95}
	old := SharedRow{Readers: 10, DirectPerS: 1000, GatewayPerS: 500, OfDirect: 0.5, WarmPerS: 800, WarmOfDirect: 0.8}
	md := Markdown(Results{Config: Config{Runs: 3}, RealData: []RealDataRun{{Codec: "snappy", Records: 10, Rows: []SharedRow{row, old}}}}, nil)
	for _, want := range []string{
		"| 1000 | 700 | 70% (66–73%) |", "| 900 | 90% (85–95%) |",
		"| 1000 | 500 | 50% |", "| 800 | 80% |", // written before the spread was kept
		"the median of the 3 rounds' ratios",
		"| compressed JSON, 1 session >= 70% of direct | snappy 70% (66–73%) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestPushFiguresAreTheMedianOfTheRounds: a push figure is shown as the
// median of the rounds with their extremes, and a row written before push
// runs had rounds shows its one figure.
func TestPushFiguresAreTheMedianOfTheRounds(t *testing.T) {
	s := spreadFigure([]float64{2.5, 1.25, 9})
	if s != (Spread{Median: 2.5, Min: 1.25, Max: 9}) {
		t.Fatalf("spread %+v", s)
	}
	if got := s.format("%.2f"); got != "2.50 (1.25–9.00)" {
		t.Fatalf("formatted %q", got)
	}
	old := PushRow{Latency: Percentiles{P99: 3}}
	if got := old.roundsOr(old.P99, old.Latency.P99).format("%.1f"); got != "3.0" {
		t.Fatalf("a row without rounds shows %q", got)
	}
}
