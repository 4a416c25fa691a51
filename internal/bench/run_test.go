package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tiny is a configuration that runs every measurement end to end in a few
// seconds.
func tiny(t *testing.T) Config {
	return Config{
		DataDir:       t.TempDir(),
		Messages:      50,
		StateCommands: 20,
		StateReads:    20,
		AuditEvents:   200,
		AuditRate:     2000,
		QueryLogSize:  1500,
		Queries:       5,
		QueryWindow:   100,
		Restarts:      1,
		Writers:       2,
		V1FsyncEvents: 20,
		V1Queries:     2,
		PayloadBytes:  64,
	}
}

// checkReport checks what every report must hold: one row per metric with
// real, ordered numbers, nothing lost, and counts that match the config.
func checkReport(t *testing.T, rep Report, cfg Config) {
	t.Helper()
	keys := []string{KeyMessageOneWay, KeyRPCRoundTrip, KeyStateUpdate, KeyStateRead, KeyAuditWrite,
		KeyAuditFill, KeyTimeRangeQuery, KeyRestart, KeyEventsLost}
	require.Len(t, rep.Metrics, len(keys))
	for i, k := range keys {
		assert.Equal(t, k, rep.Metrics[i].Key)
	}
	for _, m := range rep.Metrics {
		if m.Key == KeyEventsLost || m.Result == Skipped {
			continue
		}
		assert.Positive(t, m.Count, m.Key)
		assert.Positive(t, m.P50, m.Key)
		assert.LessOrEqual(t, m.P50, m.P99, m.Key)
		assert.LessOrEqual(t, m.P99, m.P999, m.Key)
		assert.LessOrEqual(t, m.P999, m.Max, m.Key)
		assert.NotEqual(t, Skipped, m.Result, m.Key)
	}
	count := func(key string) int {
		m, ok := rep.Metric(key)
		require.True(t, ok, key)
		return m.Count
	}
	assert.Equal(t, cfg.Messages, count(KeyMessageOneWay))
	assert.Equal(t, cfg.Messages, count(KeyRPCRoundTrip))
	assert.Equal(t, cfg.StateReads, count(KeyStateRead))
	assert.Equal(t, cfg.AuditEvents, count(KeyAuditWrite))
	assert.Equal(t, cfg.Queries, count(KeyTimeRangeQuery))
	assert.LessOrEqual(t, count(KeyStateUpdate), cfg.StateCommands)

	l := rep.Loss
	assert.Zero(t, l.Lost(), "%+v", l)
	assert.Zero(t, l.StateRejected)
	assert.Equal(t, l.AuditPublished, l.AuditAcked)
	assert.Equal(t, l.AuditAcked, l.AuditCommitted)
	assert.Equal(t, l.AuditAcked, l.AuditQueried)
	assert.Equal(t, cfg.StateCommands, l.StateAcked)
	assert.Equal(t, cfg.StateCommands, l.StateApplied)
	assert.GreaterOrEqual(t, l.AuditAcked, cfg.AuditEvents+cfg.QueryWindow+1)
	lost, _ := rep.Metric(KeyEventsLost)
	assert.Equal(t, Pass, lost.Result)
	assert.Equal(t, l.AuditAcked+l.StateAcked, lost.Count)

	require.Len(t, rep.V1Runs, 3)
	assert.Equal(t, "buffered", rep.V1Runs[0].Mode)
	assert.Equal(t, "locked-fsync", rep.V1Runs[2].Mode)
	assert.Zero(t, rep.V1Runs[2].Lost, "v1 with flock and fsync loses nothing")
	for _, v := range rep.V1Runs {
		assert.Equal(t, v.Expected, v.Lines, "v1 loses no bytes, only lines: %+v", v)
	}
	msg, _ := rep.Metric(KeyMessageOneWay)
	// The row carries its floor: raw core NATS one-way, timed in the same
	// run in rounds between codi2's (issue 16 judges live mail against it).
	assert.Regexp(t, `raw core NATS one-way in the same run .*: p50 \S+ p99 \S+, so codi2's p99 is [0-9.]+x raw core's`, msg.Note)
	require.Len(t, msg.V1, 2)
	assert.Positive(t, msg.V1[0].SpeedupP99)
	assert.Equal(t, cfg.Writers*cfg.V1FsyncEvents/cfg.Writers, msg.V1[0].Count)

	assert.Equal(t, cfg.Writers, rep.Config.Writers)
	assert.Positive(t, rep.Elapsed)
	assert.Positive(t, rep.Machine.CPUs)
	assert.Positive(t, rep.Machine.FsyncP50)
}

func TestRun_Embedded(t *testing.T) {
	cfg := tiny(t)
	var progress bytes.Buffer
	cfg.Progress = &progress
	rep, err := Run(context.Background(), cfg, bustest.Logger(t))
	require.NoError(t, err)
	cfg.Validate()
	checkReport(t, rep, cfg)
	assert.Equal(t, "embedded", rep.Mode)
	assert.True(t, rep.Loss.AfterRestart)
	restart, _ := rep.Metric(KeyRestart)
	assert.Equal(t, cfg.Restarts, restart.Count)
	assert.NotEqual(t, Skipped, restart.Result)
	assert.Contains(t, progress.String(), "restart 1: ready in")
	assert.Contains(t, progress.String(), "done")

	var table bytes.Buffer
	require.NoError(t, rep.Table(&table))
	out := table.String()
	for _, want := range []string{"METRIC", "message one-way", "rpc round trip", "state update", "audit write",
		"time-range query", "restart → ready", "events lost", "versus CODI v1", "flock + write + fsync",
		"CODI v1 log integrity", "published ", "p99 < 0.1ms", "p99 < 5ms", "p99 < 10ms", "p99 < 50ms", "max < 5s", "0 lost"} {
		assert.Contains(t, out, want)
	}

	var js bytes.Buffer
	require.NoError(t, rep.JSON(&js))
	var back Report
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	assert.Equal(t, rep.Metrics, back.Metrics)
	assert.Equal(t, rep.Loss, back.Loss)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(js.Bytes(), &raw))
	assert.Contains(t, raw, "machine")
	assert.NotContains(t, js.String(), "Progress")

	// The data directory keeps the server's and v1's files.
	assert.DirExists(t, filepath.Join(cfg.DataDir, "codi2", "jetstream"))
	assert.FileExists(t, filepath.Join(cfg.DataDir, "v1", "log", "codi-v1.log"))
}

func TestRun_External(t *testing.T) {
	dir := t.TempDir()
	emb, err := startEmbedded(context.Background(), dir, "", "127.0.0.1:-1", bustest.Logger(t))
	require.NoError(t, err)
	defer func() { assert.NoError(t, emb.stop()) }()

	cfg := tiny(t)
	cfg.DataDir = "" // a temporary directory, removed
	cfg.NATSURL = emb.url()
	_, err = Run(context.Background(), cfg, bustest.Logger(t))
	require.ErrorIs(t, err, ErrConfig, "a run against a server needs AllowWrites")
	assert.Contains(t, err.Error(), "--allow-writes")
	cfg.AllowWrites = true
	rep, err := Run(context.Background(), cfg, bustest.Logger(t))
	require.NoError(t, err)
	cfg.Validate()
	checkReport(t, rep, cfg)
	assert.Equal(t, "external", rep.Mode)
	assert.False(t, rep.Loss.AfterRestart)
	restart, _ := rep.Metric(KeyRestart)
	assert.Equal(t, Skipped, restart.Result)
	assert.Contains(t, restart.Note, "embedded")

	var table bytes.Buffer
	require.NoError(t, rep.Table(&table))
	assert.Contains(t, table.String(), "SKIPPED restart → ready")

	// A second run against the same server counts its own events only: the
	// log is already full, so it adds just enough to query.
	rep2, err := Run(context.Background(), cfg, bustest.Logger(t))
	require.NoError(t, err)
	assert.Equal(t, cfg.AuditEvents+cfg.QueryWindow+1, rep2.Loss.AuditAcked)
	assert.Zero(t, rep2.Loss.Lost())
	assert.Equal(t, cfg.StateCommands, rep2.Loss.StateApplied)
}

func TestRun_Errors(t *testing.T) {
	t.Run("invalid config", func(t *testing.T) {
		_, err := Run(context.Background(), Config{Writers: -1}, bustest.Logger(t))
		require.ErrorIs(t, err, ErrConfig)
	})
	t.Run("no services behind the url", func(t *testing.T) {
		b := bustest.Run(t)
		cfg := tiny(t)
		cfg.NATSURL = b.ClientURL()
		cfg.AllowWrites = true
		cfg.OpTimeout = 300 * time.Millisecond
		_, err := Run(context.Background(), cfg, bustest.Logger(t))
		require.ErrorIs(t, err, ErrNoService)
		assert.Contains(t, err.Error(), "codi.state.status")
	})
	t.Run("no server behind the url", func(t *testing.T) {
		cfg := tiny(t)
		cfg.NATSURL = "nats://127.0.0.1:1"
		cfg.AllowWrites = true
		_, err := Run(context.Background(), cfg, bustest.Logger(t))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "connect")
	})
	t.Run("data directory is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(f, nil, 0o600))
		cfg := tiny(t)
		cfg.DataDir = f
		_, err := Run(context.Background(), cfg, bustest.Logger(t))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "data directory")
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		cfg := tiny(t)
		_, err := Run(ctx, cfg, bustest.Logger(t))
		require.Error(t, err)
	})
}

// --store pebble runs the same bench on an embedded server on pebble: its
// data directory holds the pebble database, the restart reopens it, and the
// table's first line names the store.
func TestRun_EmbeddedPebble(t *testing.T) {
	cfg := tiny(t)
	cfg.Store = "pebble"
	rep, err := Run(context.Background(), cfg, bustest.Logger(t))
	require.NoError(t, err)
	cfg.Validate()
	checkReport(t, rep, cfg)
	restart, _ := rep.Metric(KeyRestart)
	assert.Equal(t, cfg.Restarts, restart.Count)
	assert.DirExists(t, filepath.Join(cfg.DataDir, "codi2", "pebble"))
	assert.NoFileExists(t, filepath.Join(cfg.DataDir, "codi2", "state.db"))
	var table bytes.Buffer
	require.NoError(t, rep.Table(&table))
	assert.Contains(t, table.String(), "codi2 bench: embedded pebble server,")
}

func TestConfig_Validate(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		var c Config
		require.NoError(t, c.Validate())
		assert.Equal(t, DefaultMessages, c.Messages)
		assert.Equal(t, DefaultAuditRate, c.AuditRate)
		assert.Equal(t, DefaultQueryLogSize, c.QueryLogSize)
		assert.Equal(t, DefaultWriters, c.Writers)
		assert.Equal(t, DefaultOpTimeout, c.OpTimeout)
		assert.NotNil(t, c.Progress)
	})
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"negative count", Config{Messages: -1}, "Messages=-1"},
		{"huge count", Config{QueryLogSize: MaxCount + 1}, "QueryLogSize"},
		{"writers", Config{Writers: MaxWriters + 1}, "Writers"},
		{"payload", Config{PayloadBytes: -3}, "PayloadBytes"},
		{"timeout", Config{OpTimeout: -time.Second}, "OpTimeout"},
		{"window", Config{QueryWindow: 20_000}, "QueryWindow"},
		{"fewer commands than writers", Config{StateCommands: 3, Writers: 4}, "StateCommands=3"},
		{"store", Config{Store: "rocks"}, `Store="rocks", want bolt or pebble`},
		{"store of an external server", Config{Store: "pebble", NATSURL: "nats://127.0.0.1:1", AllowWrites: true}, "embedded server only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			require.ErrorIs(t, err, ErrConfig)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestProgress_Watch(t *testing.T) {
	var buf proctest.Buffer
	p := newProgress(&buf)
	p.every = time.Millisecond
	stop := p.watch("things", 10, func() int { return 7 })
	require.Eventually(t, func() bool { return strings.Contains(buf.String(), "things: 7/10") }, 5*time.Second, time.Millisecond)
	stop()
	stop() // idempotent
	p.printf("hello %d", 1)
	assert.Contains(t, buf.String(), "] hello 1\n")
}

// cancelOn is a progress writer that cancels a context when a line contains
// a phrase: a way to stop Run inside a given phase.
type cancelOn struct {
	phrase string
	cancel context.CancelFunc
	buf    proctest.Buffer
}

func (c *cancelOn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.phrase) {
		c.cancel()
	}
	return c.buf.Write(p)
}

// TestRun_CancelledInEveryPhase stops Run in each phase and checks that it
// returns the cancellation, not a report, and leaves nothing running (the
// test's goroutine leak check is -race plus the data directory removal).
func TestRun_CancelledInEveryPhase(t *testing.T) {
	phases := []string{
		"message one-way", "rpc round trip", "state update", "state read", "audit write under load",
		"audit fill", "time-range query", "restart → ready", "restart 1: ready", "events lost",
		"v1: 2 buffered writers", "with flock + write + fsync", "state reads, each a scan", "recovery scans",
	}
	for _, phrase := range phases {
		t.Run(phrase, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := tiny(t)
			cfg.DataDir = ""
			w := &cancelOn{phrase: phrase, cancel: cancel}
			cfg.Progress = w
			_, err := Run(ctx, cfg, bustest.Logger(t))
			require.Error(t, err, "progress:\n%s", w.buf.String())
			assert.Contains(t, w.buf.String(), phrase, "Run failed before the phase: %v", err)
		})
	}
}
