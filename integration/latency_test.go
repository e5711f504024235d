package integration

import (
	"maps"
	"math"
	"slices"
	"time"
)

// latencyHistogram counts latencies in buckets 2% wide, so that its memory does not grow with the run's length (a
// slice of every latency would: the soak measures its own heap).
type latencyHistogram map[int]int

func latencyBucket(d time.Duration) int {
	return int(math.Log(float64(max(d, time.Microsecond))) / math.Log(1.02))
}

func (h latencyHistogram) add(d time.Duration) { h[latencyBucket(d)]++ }

// quantile is the latency below which the fraction q of the counted ones fall, to within 2%.
func (h latencyHistogram) quantile(q float64) time.Duration {
	n := 0
	for _, c := range h {
		n += c
	}
	buckets := slices.Sorted(maps.Keys(h))
	seen := 0
	for _, b := range buckets {
		seen += h[b]
		if float64(seen) > q*float64(n) {
			return time.Duration(math.Pow(1.02, float64(b)+0.5))
		}
	}
	return 0
}
