package latency

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecorder_Summary_NearestRank(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		want    Summary
	}{
		{
			name:    "one to thousand ms",
			samples: msRange(1, 1000),
			want: Summary{Count: 1000, Min: ms(1), P50: ms(500), P99: ms(990),
				P999: ms(999), Max: ms(1000), Mean: 500*ms(1) + 500*time.Microsecond},
		},
		{
			name:    "single sample is every percentile",
			samples: []time.Duration{ms(7)},
			want:    Summary{Count: 1, Min: ms(7), P50: ms(7), P99: ms(7), P999: ms(7), Max: ms(7), Mean: ms(7)},
		},
		{
			// ceil(0.5*10)=5, ceil(0.99*10)=10, ceil(0.999*10)=10.
			name:    "ten samples round the rank up",
			samples: msRange(1, 10),
			want: Summary{Count: 10, Min: ms(1), P50: ms(5), P99: ms(10), P999: ms(10),
				Max: ms(10), Mean: 5*ms(1) + 500*time.Microsecond},
		},
		{
			// ceil(0.5*2001)=1001, ceil(0.99*2001)=1981, ceil(0.999*2001)=1999.
			name:    "odd count",
			samples: msRange(1, 2001),
			want: Summary{Count: 2001, Min: ms(1), P50: ms(1001), P99: ms(1981),
				P999: ms(1999), Max: ms(2001), Mean: ms(1001)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Recorder
			// Record out of order: Summary must sort.
			for _, i := range rand.Perm(len(tt.samples)) {
				r.Record(tt.samples[i])
			}
			assert.Equal(t, tt.want, r.Summary())
		})
	}
}

func TestRecorder_Summary_Empty(t *testing.T) {
	var r Recorder
	assert.Equal(t, Summary{}, r.Summary())
	assert.Equal(t, Summary{}, NewRecorder(10).Summary())
	assert.Equal(t, Summary{}, NewRecorder(-1).Summary())
}

func TestRecorder_Summary_DoesNotDisturbSamples(t *testing.T) {
	r := NewRecorder(3)
	r.Record(ms(3))
	r.Record(ms(1))
	first := r.Summary()
	r.Record(ms(2))
	assert.Equal(t, 2, first.Count)
	assert.Equal(t, Summary{Count: 3, Min: ms(1), P50: ms(2), P99: ms(3), P999: ms(3), Max: ms(3), Mean: ms(2)}, r.Summary())
}

func TestRecorder_Record_Concurrent(t *testing.T) {
	const goroutines, each = 8, 1000
	r := NewRecorder(0)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				r.Record(time.Duration(g*each + i + 1))
			}
		})
	}
	// Summary while recording must not race (run with -race).
	_ = r.Summary()
	wg.Wait()

	s := r.Summary()
	assert.Equal(t, goroutines*each, s.Count)
	assert.Equal(t, time.Duration(1), s.Min)
	assert.Equal(t, time.Duration(goroutines*each), s.Max)
	assert.Equal(t, time.Duration(goroutines*each/2), s.P50)
}

func TestSummary_String(t *testing.T) {
	s := Summary{Count: 3, Min: ms(1), P50: ms(2), P99: ms(3), P999: ms(3), Max: ms(3), Mean: ms(2)}
	assert.Equal(t, "n=3 min=1ms p50=2ms p99=3ms p99.9=3ms max=3ms mean=2ms", s.String())
}

func TestThroughput(t *testing.T) {
	tests := []struct {
		name    string
		count   int
		elapsed time.Duration
		want    float64
	}{
		{name: "per second", count: 1000, elapsed: time.Second, want: 1000},
		{name: "sub second", count: 50, elapsed: 100 * time.Millisecond, want: 500},
		{name: "zero elapsed", count: 10, elapsed: 0, want: 0},
		{name: "negative elapsed", count: 10, elapsed: -time.Second, want: 0},
		{name: "no operations", count: 0, elapsed: time.Second, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.InDelta(t, tt.want, Throughput(tt.count, tt.elapsed), 1e-9)
		})
	}
}

func BenchmarkRecorder_Record(b *testing.B) {
	var r Recorder
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Record(time.Duration(i))
	}
	require.Equal(b, b.N, r.Summary().Count)
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// msRange returns lo..hi milliseconds inclusive.
func msRange(lo, hi int) []time.Duration {
	out := make([]time.Duration, 0, hi-lo+1)
	for i := lo; i <= hi; i++ {
		out = append(out, ms(i))
	}
	return out
}
