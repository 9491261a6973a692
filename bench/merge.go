package bench

import (
	"errors"
	"slices"
)

// Best combines runs of the same command on the same code into one result
// that keeps, for each figure, its best run: the fastest throughput per
// reader, the latency set with the lowest p99, the idle-session set with
// the least memory, the fan-out run with the least Kafka traffic, the
// real-data row with the highest median ratio to direct (kept whole: its
// spread and fastest reads are those of the same run, each ratio paired
// within one round of it), the push latency run with the lowest p99. A loaded
// machine only ever makes figures worse, so the best of several runs is the
// most faithful; apply it to both sides of a comparison alike.
func Best(runs ...Results) (Results, error) {
	if len(runs) == 0 {
		return Results{}, errors.New("no results to combine")
	}
	best := runs[len(runs)-1]
	best.Throughput = slices.Clone(best.Throughput)
	best.Subscribe.Fanout = slices.Clone(best.Subscribe.Fanout)
	best.Push = slices.Clone(best.Push)
	best.RealData = slices.Clone(best.RealData)
	for i := range best.RealData {
		best.RealData[i].Rows = slices.Clone(best.RealData[i].Rows)
	}
	best.Merged = 0
	for _, r := range runs {
		best.Merged += max(r.Merged, 1)
		for i, row := range best.Throughput {
			for _, other := range r.Throughput {
				if other.Reader == row.Reader && other.Sessions == row.Sessions && other.ValueBytes == row.ValueBytes && other.RecordsPerS > best.Throughput[i].RecordsPerS {
					best.Throughput[i] = other
				}
			}
		}
		best.Latency.Ping = lowerP99(best.Latency.Ping, r.Latency.Ping)
		best.Latency.Fetch = lowerP99(best.Latency.Fetch, r.Latency.Fetch)
		best.Latency.ProduceToClient = lowerP99(best.Latency.ProduceToClient, r.Latency.ProduceToClient)
		if h := idleHeap(r.Sessions); h > 0 && (h < idleHeap(best.Sessions) || idleHeap(best.Sessions) == 0) {
			best.Sessions = r.Sessions
		}
		if r.Fanout.Delivered > 0 && (r.Fanout.BytesPerRecord < best.Fanout.BytesPerRecord || best.Fanout.Delivered == 0) {
			best.Fanout = r.Fanout
		}
		best.Subscribe.ProduceToClient = lowerP99(best.Subscribe.ProduceToClient, r.Subscribe.ProduceToClient)
		for i, row := range best.Subscribe.Fanout {
			for _, other := range r.Subscribe.Fanout {
				if other.Sessions == row.Sessions && other.RecordsPerS > best.Subscribe.Fanout[i].RecordsPerS {
					best.Subscribe.Fanout[i] = other
				}
			}
		}
		for i, row := range best.Push {
			for _, other := range r.Push {
				if other.Sessions == row.Sessions && other.Latency.Samples > 0 && other.Latency.P99 < best.Push[i].Latency.P99 {
					best.Push[i] = other
				}
			}
		}
		for i, run := range best.RealData {
			for _, other := range r.RealData {
				if other.Codec != run.Codec {
					continue
				}
				for j, row := range run.Rows {
					for _, o := range other.Rows {
						if o.Readers == row.Readers && o.OfDirect > best.RealData[i].Rows[j].OfDirect {
							best.RealData[i].Rows[j] = o
						}
					}
				}
			}
		}
	}
	for i, row := range best.Throughput {
		for _, direct := range best.Throughput {
			if direct.Reader == "direct" && direct.ValueBytes == row.ValueBytes {
				best.Throughput[i].OfDirect = row.RecordsPerS / direct.RecordsPerS
			}
		}
	}
	return best, nil
}

func lowerP99(a, b Percentiles) Percentiles {
	if b.Samples > 0 && b.P99 < a.P99 {
		return b
	}
	return a
}

// idleHeap is the heap per session at the largest idle step.
func idleHeap(s SessionsResult) float64 {
	if len(s.Steps) == 0 {
		return 0
	}
	return s.Steps[len(s.Steps)-1].HeapPerSession
}
