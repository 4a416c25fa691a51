package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/codi2/codi2/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var tinyBench = []string{"--messages", "20", "--state-commands", "10", "--state-reads", "10", "--audit-events", "100",
	"--audit-rate", "2000", "--query-log-size", "500", "--queries", "3", "--query-window", "50", "--restarts", "1",
	"--writers", "2", "--v1-fsync-events", "10", "--v1-queries", "1", "--payload-bytes", "32"}

func TestRun_BenchTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a small benchmark")
	}
	for _, asJSON := range []bool{false, true} {
		args := append([]string{"bench", "--data", t.TempDir()}, tinyBench...)
		if asJSON {
			args = append(args, "--json")
		}
		var stdout, stderr proctest.Buffer
		require.Equal(t, 0, run(context.Background(), args, &stdout, &stderr), stderr.String())
		if !asJSON {
			assert.Contains(t, stdout.String(), "events lost")
			assert.Contains(t, stdout.String(), "P99")
			continue
		}
		var rep struct {
			Metrics []struct {
				Key   string `json:"key"`
				Count int    `json:"count"`
			} `json:"metrics"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout.String()), &rep), stdout.String())
		assert.NotEmpty(t, rep.Metrics)
		for _, m := range rep.Metrics {
			assert.NotEmpty(t, m.Key)
		}
	}
}

func TestRun_BenchErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--no-such-flag"},
		{"bench", "--log-level", "loud"},
		{"bench", "--writers", "-1"},
	} {
		var stderr proctest.Buffer
		assert.Equal(t, 2, run(context.Background(), args, &proctest.Buffer{}, &stderr), "bad usage: %v", args)
		assert.NotEmpty(t, stderr.String())
	}
}

// `codi2 bench --nats-url` writes into that server's append-only log for
// good: it is refused without --allow-writes, before it connects.
func TestRun_BenchExternalNeedsAllowWrites(t *testing.T) {
	var stderr proctest.Buffer
	code := run(context.Background(), []string{"bench", "--nats-url", "nats://127.0.0.1:1"}, &proctest.Buffer{}, &stderr)
	assert.Equal(t, 2, code, "bad usage")
	assert.Contains(t, stderr.String(), "--allow-writes")
	assert.Contains(t, stderr.String(), "append-only audit log")
	assert.NotContains(t, stderr.String(), "connect", "refused before connecting")
}
