package bench

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/latency"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFormat(t *testing.T) {
	durs := []struct {
		d    time.Duration
		want string
	}{
		{0, "-"}, {-time.Second, "-"}, {999, "999ns"}, {1500, "1.50µs"}, {12_345, "12.3µs"},
		{123_456, "123µs"}, {5 * time.Millisecond, "5.00ms"}, {1500 * time.Millisecond, "1.50s"},
	}
	for _, tt := range durs {
		assert.Equal(t, tt.want, fmtDur(tt.d), "%d", tt.d)
	}
	rates := []struct {
		v    float64
		want string
	}{
		{0, "-"}, {math.Inf(1), "-"}, {math.NaN(), "-"}, {0.5, "0.500/s"}, {3, "3.00/s"},
		{1500, "1.50k/s"}, {2_500_000, "2.50M/s"},
	}
	for _, tt := range rates {
		assert.Equal(t, tt.want, fmtRate(tt.v), "%v", tt.v)
	}
	xs := []struct {
		v    float64
		want string
	}{
		{0, "-"}, {math.Inf(1), "-"}, {0.0123, "0.012x"}, {0.5, "0.5x"}, {1, "1.00x"}, {297.4, "297x"},
	}
	for _, tt := range xs {
		assert.Equal(t, tt.want, fmtX(tt.v), "%v", tt.v)
	}
	counts := []struct {
		n    uint64
		want string
	}{
		{999, "999"}, {1000, "1k"}, {100_000, "100k"}, {1_000_000, "1M"}, {2_500_000, "2.5M"}, {100_123, "100123"},
	}
	for _, tt := range counts {
		assert.Equal(t, tt.want, fmtCount(tt.n))
	}
	assert.Equal(t, "-", orDash(""))
}

func summary(ms ...int) latency.Summary {
	r := latency.NewRecorder(len(ms))
	for _, m := range ms {
		r.Record(time.Duration(m) * time.Millisecond)
	}
	return r.Summary()
}

func TestMetric_Judge(t *testing.T) {
	t.Run("pass", func(t *testing.T) {
		m := newMetric("k", "k", summary(1, 2, 3), 10)
		m.judge(targetState, "why")
		assert.Equal(t, Pass, m.Result)
		assert.Empty(t, m.Miss)
	})
	t.Run("fail says by how much and why", func(t *testing.T) {
		m := newMetric("k", "k", summary(1, 2, 10), 10)
		m.Split = &Split{AckP50: time.Millisecond, CommitP99: 9 * time.Millisecond}
		m.judge(targetState, "the disk")
		assert.Equal(t, Fail, m.Result)
		assert.Equal(t, "p99 10.0ms is 5.00ms over the 5.00ms target (2.0x): the disk (publish → PubAck p50 1.00ms p99 -, PubAck → committed p50 - p99 9.00ms)", m.Miss)
	})
	t.Run("max", func(t *testing.T) {
		m := newMetric("k", "k", summary(1000, 6000), 0)
		m.judge(targetRestart, "")
		assert.Equal(t, Fail, m.Result)
		assert.Equal(t, "max 6.00s is 1.00s over the 5.00s target (1.2x)", m.Miss)
	})
	t.Run("no samples", func(t *testing.T) {
		m := newMetric("k", "k", latency.Summary{}, 0)
		m.judge(targetMessage, "")
		assert.Equal(t, Fail, m.Result)
		assert.Equal(t, "no samples", m.Miss)
	})
	t.Run("loss", func(t *testing.T) {
		m := Metric{}
		m.judge(targetLost, "")
		assert.Equal(t, StatLost, m.Target.Stat)
		m.judgeLoss(Loss{AuditAcked: 10, AuditQueried: 10, StateAcked: 2, StateApplied: 2})
		assert.Equal(t, Pass, m.Result)
		m.judgeLoss(Loss{AuditAcked: 10, AuditQueried: 9, AuditLost: 1, AuditDuplicate: 2, StateAcked: 2, StateApplied: 1, StateLost: 1})
		assert.Equal(t, Fail, m.Result)
		assert.Equal(t, "audit lost 1 and duplicated 2 of 10 acknowledged; state lost 1 of 2 acknowledged, 0 rejected", m.Miss)
		m.judgeLoss(Loss{AuditAcked: 10, StateRejected: 1})
		assert.Equal(t, Fail, m.Result, "a rejection where none can happen is a failure")
	})
	t.Run("compare", func(t *testing.T) {
		m := newMetric("k", "k", summary(1, 2), 100)
		m.compare("v1", summary(10, 20), 10, "note")
		m.compare("v1 no throughput", summary(1), 0, "")
		require.Len(t, m.V1, 2)
		assert.InDelta(t, 10, m.V1[0].SpeedupP99, 1e-9)
		assert.InDelta(t, 10, m.V1[0].SpeedupThroughput, 1e-9)
		assert.Zero(t, m.V1[1].SpeedupThroughput)
	})
}

func testReport() Report {
	pass := newMetric(KeyMessageOneWay, "message", summary(1, 2), 100)
	pass.judge(Target{Stat: StatP99, Below: time.Second, Text: "p99 < 1s"}, "")
	pass.compare("v1 slow", summary(100, 200), 10, "slow")
	pass.compare("v1 fast", summary(1), 1000, "")
	fail := newMetric(KeyStateUpdate, "state", summary(10, 20), 100)
	fail.judge(targetState, "disk")
	fail.compare("v1", summary(20, 40), 0, "")
	fail.Note = "qualified"
	skip := Metric{Key: KeyRestart, Name: "restart", Result: Skipped, Note: "no server"}
	lost := Metric{Key: KeyEventsLost, Name: "lost", Count: 12}
	lost.judgeLoss(Loss{AuditAcked: 10, AuditQueried: 10, StateAcked: 2, StateApplied: 2})
	return Report{
		Mode: "embedded", Elapsed: time.Second, Config: Config{Writers: 5},
		Machine: Machine{OS: "linux", Arch: "amd64", CPUs: 2, GoVersion: "go1.26", FsyncP50: time.Millisecond},
		Metrics: []Metric{pass, fail, skip, lost},
		Loss:    Loss{AuditPublished: 10, AuditAcked: 10, AuditCommitted: 10, AuditQueried: 10, StateAcked: 2, StateApplied: 2},
		V1Runs:  []V1Run{{Name: "log", Mode: "buffered", Writers: 5, Expected: 100, Lines: 100, Corrupted: 3, Spliced: 1, Lost: 4, LossRate: 0.04}},
	}
}

func TestReport_Table(t *testing.T) {
	rep := testReport()
	assert.False(t, rep.Passed())
	met, compared := rep.SpeedupMet()
	assert.Equal(t, 1, met)
	assert.Equal(t, 2, compared)
	_, ok := rep.Metric("nope")
	assert.False(t, ok)

	var buf bytes.Buffer
	require.NoError(t, rep.Table(&buf))
	out := buf.String()
	for _, want := range []string{
		"codi2 bench: embedded server, 5 writers, linux/amd64, 2 CPUs (-), go1.26, load -, disk fsync p50 1.00ms p99 -",
		"design target 10x-100x: met by 1 of 2",
		"FAIL", "PASS", "skipped", "lost 0",
		"MISSED state: p99 20.0ms is 15.0ms over the 5.00ms target (4.0x): disk",
		"SKIPPED restart: no server",
		"state: qualified",
		"v1 v1 slow: slow",
		"4.00%",
		"audit: published 10, PubAck'd 10, committed 10, queried back 10, lost 0, duplicated 0",
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "counted after the restarts")

	rep.Metrics = rep.Metrics[:1]
	rep.Machine.LoadAvg = "0.5"
	assert.True(t, rep.Passed())
	buf.Reset()
	require.NoError(t, rep.Table(&buf))
	assert.Contains(t, buf.String(), "load 0.5")
}

// failWriter fails after n bytes.
type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errors.New("disk full")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestReport_Table_WriteError(t *testing.T) {
	rep := testReport()
	var full bytes.Buffer
	require.NoError(t, rep.Table(&full))
	// Fail at every point of the output: the error always comes back.
	for n := 0; n < full.Len(); n += 97 {
		err := rep.Table(&failWriter{n: n})
		require.Error(t, err, "fail after %d bytes", n)
		assert.True(t, strings.Contains(err.Error(), "disk full"))
	}
	assert.Error(t, rep.JSON(&failWriter{}))
}
