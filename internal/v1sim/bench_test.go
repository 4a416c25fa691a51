package v1sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/latency"
)

// benchRuns runs RunWrites once per iteration and reports the last run's
// latency percentiles and the mean integrity of all runs. One op is one run.
func benchRuns(b *testing.B, cfg Config) {
	b.ReportAllocs()
	var last WriteResult
	var corrupted, spliced, lost int
	for range b.N {
		cfg.Dir = b.TempDir()
		res, err := RunWrites(b.Context(), cfg)
		require.NoError(b, err)
		b.StopTimer()
		in, err := Verify(res.Path, cfg)
		require.NoError(b, err)
		corrupted += in.Corrupted
		spliced += in.Spliced
		lost += in.Lost
		last = res
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(last.Latency.P50.Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(last.Latency.P99.Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(last.Latency.P999.Nanoseconds()), "p999-ns")
	b.ReportMetric(last.Throughput, "events/s")
	b.ReportMetric(float64(corrupted)/n, "corrupt/op")
	b.ReportMetric(float64(spliced)/n, "spliced/op")
	b.ReportMetric(100*float64(lost)/n/float64(last.Events), "lost-%")
}

func BenchmarkV1_Buffered(b *testing.B) {
	for _, w := range []int{1, 5} {
		b.Run(fmt.Sprintf("writers=%d/events=10000", w), func(b *testing.B) {
			benchRuns(b, Config{Writers: w, EventsPerWriter: 10_000, Mode: Buffered})
		})
	}
}

func BenchmarkV1_LockedFsync(b *testing.B) {
	for _, w := range []int{1, 5} {
		b.Run(fmt.Sprintf("writers=%d/events=%d", w, 500/w), func(b *testing.B) {
			benchRuns(b, Config{Writers: w, EventsPerWriter: 500 / w, Mode: LockedFsync})
		})
	}
}

// v1Log writes a 100,000-line log the way v1 did: five buffered writers,
// torn lines included.
func v1Log(b *testing.B) WriteResult {
	b.Helper()
	res, err := RunWrites(b.Context(), Config{Dir: b.TempDir(), Writers: 5, EventsPerWriter: 20_000, Mode: Buffered})
	require.NoError(b, err)
	return res
}

// reportScan reports the latency of one full scan as percentiles over ops.
func reportScan(b *testing.B, samples []time.Duration, lines int) {
	b.Helper()
	rec := latency.NewRecorder(len(samples))
	for _, d := range samples {
		rec.Record(d)
	}
	s := rec.Summary()
	b.ReportMetric(float64(s.P50.Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(s.P99.Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(lines), "lines/op")
}

func BenchmarkV1_ScanState(b *testing.B) {
	res := v1Log(b)
	b.ReportAllocs()
	var samples []time.Duration
	var lines int
	for b.Loop() {
		_, n, elapsed, err := ScanState(res.Path, TaskID(42))
		require.NoError(b, err)
		samples = append(samples, elapsed)
		lines = n
	}
	reportScan(b, samples, lines)
}

func BenchmarkV1_QueryTimeRange(b *testing.B) {
	res := v1Log(b)
	evs, _, _, err := QueryTimeRange(res.Path, time.Time{}, time.Now().Add(time.Hour))
	require.NoError(b, err)
	// The middle tenth of the run: an index would touch 10% of the lines.
	from := evs[len(evs)*45/100].TS
	to := evs[len(evs)*55/100].TS
	b.ReportAllocs()
	var samples []time.Duration
	var lines int
	for b.Loop() {
		_, n, elapsed, err := QueryTimeRange(res.Path, from, to)
		require.NoError(b, err)
		samples = append(samples, elapsed)
		lines = n
	}
	reportScan(b, samples, lines)
}
