package latency

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// Recorder collects latency samples. Every sample is kept, so percentiles are
// exact rather than estimated from buckets; at 8 bytes a sample, a million
// samples cost 8 MB, which is the right trade for benchmarks that want to
// compare tails honestly.
//
// The zero value is ready to use. A Recorder is safe for concurrent use by
// multiple goroutines: Record takes a mutex, so hot loops that must not
// contend on it should time into a local slice and Record afterwards.
type Recorder struct {
	mu      sync.Mutex
	samples []time.Duration
}

// NewRecorder returns a Recorder with room for sizeHint samples, so that
// recording does not grow the slice in the middle of a measurement. It is
// safe for concurrent use.
func NewRecorder(sizeHint int) *Recorder {
	return &Recorder{samples: make([]time.Duration, 0, max(sizeHint, 0))}
}

// Record adds one sample. It is safe for concurrent use.
func (r *Recorder) Record(d time.Duration) {
	r.mu.Lock()
	r.samples = append(r.samples, d)
	r.mu.Unlock()
}

// Summary returns the statistics of every sample recorded so far; an empty
// Recorder gives the zero Summary. It sorts a copy, so it is safe for
// concurrent use with Record and costs O(n log n).
func (r *Recorder) Summary() Summary {
	r.mu.Lock()
	sorted := slices.Clone(r.samples)
	r.mu.Unlock()
	return summarize(sorted)
}

// Summary describes a set of latency samples. Percentiles use the
// nearest-rank method: the p-th percentile of n sorted samples is the sample
// at 1-based rank ceil(p/100 * n), so it is always a value that was actually
// observed. For 1ms..1000ms that gives P50 = 500ms, P99 = 990ms and
// P999 = 999ms. A Summary is a plain value and safe to share.
type Summary struct {
	Count int
	Min   time.Duration
	P50   time.Duration
	P99   time.Duration
	P999  time.Duration // 99.9th percentile
	Max   time.Duration
	Mean  time.Duration // truncated toward zero
}

// String formats s on one line for benchmark output. It is safe for
// concurrent use.
func (s Summary) String() string {
	return fmt.Sprintf("n=%d min=%v p50=%v p99=%v p99.9=%v max=%v mean=%v",
		s.Count, s.Min, s.P50, s.P99, s.P999, s.Max, s.Mean)
}

// Throughput returns count operations over elapsed as operations per second,
// or 0 when elapsed is not positive. It is safe for concurrent use.
func Throughput(count int, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(count) / elapsed.Seconds()
}

// summarize computes a Summary, sorting samples in place.
func summarize(samples []time.Duration) Summary {
	n := len(samples)
	if n == 0 {
		return Summary{}
	}
	slices.Sort(samples)
	// Sum in int64 nanoseconds: overflow needs 292 years of total latency.
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	return Summary{
		Count: n,
		Min:   samples[0],
		P50:   nearestRank(samples, 500),
		P99:   nearestRank(samples, 990),
		P999:  nearestRank(samples, 999),
		Max:   samples[n-1],
		Mean:  sum / time.Duration(n),
	}
}

// nearestRank returns the perMille-th per-mille of sorted, which must not be
// empty. Integer arithmetic keeps ceil exact: 0.99*1000 in floating point is
// 990.0000000000001 and would round up to the wrong rank.
func nearestRank(sorted []time.Duration, perMille int) time.Duration {
	rank := (perMille*len(sorted) + 999) / 1000 // ceil(perMille/1000 * n)
	return sorted[max(rank, 1)-1]
}
