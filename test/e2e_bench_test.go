package test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"

	"github.com/codi2/codi2/internal/bench"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestE2E_Bench_AgainstRunningServer runs the built `codi2 bench --nats-url`
// against a separate `codi2 serve`, small, and reads its --json report:
// every metric measured, nothing lost, the restart skipped because the bench
// does not own that server. Flags come from the command line and, as for
// serve, from CODI2_* variables.
func TestE2E_Bench_AgainstRunningServer(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	cmd := exec.Command(bin, "bench", "--nats-url", srv.URL, "--allow-writes", "--json",
		"--messages", "100", "--state-commands", "50", "--state-reads", "50", "--audit-events", "500",
		"--audit-rate", "2000", "--query-log-size", "3000", "--queries", "10", "--query-window", "100",
		"--v1-fsync-events", "20", "--v1-queries", "2")
	cmd.Env = append(cmd.Environ(), "CODI2_WRITERS=3")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "stderr:\n%s", stderr.String())

	var rep bench.Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), "stdout:\n%s", stdout.String())
	assert.Equal(t, "external", rep.Mode)
	assert.Equal(t, 3, rep.Config.Writers, "CODI2_WRITERS")
	assert.Equal(t, 100, rep.Config.Messages)
	require.Len(t, rep.Metrics, 9)
	for _, m := range rep.Metrics {
		if m.Key == bench.KeyRestart {
			assert.Equal(t, bench.Skipped, m.Result)
			continue
		}
		assert.Positive(t, m.Count, m.Key)
		if m.Key != bench.KeyEventsLost {
			assert.LessOrEqual(t, m.P50, m.P99, m.Key)
		}
	}
	assert.Zero(t, rep.Loss.Lost())
	assert.Equal(t, rep.Loss.AuditAcked, rep.Loss.AuditQueried)
	assert.Equal(t, 50, rep.Loss.StateApplied)
	assert.Contains(t, stderr.String(), "message one-way", "progress on stderr")
}
