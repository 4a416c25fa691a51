package test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// codi2 runs the built binary's verb as agent against url and returns its
// stdout, stderr and exit code, as a shell-using agent sees them.
func codi2(t *testing.T, bin, url, agent string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cmd.Environ(), "CODI2_NATS_URL="+url, "CODI2_AGENT="+agent)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return out.String(), errb.String(), code
}

// The ADR-028 story through the agent command line of the built binary:
// the orchestrator sends, agent-2 catches up and claims, agent-3 loses the
// claim with exit 3 and sees the holder, agent-2 releases, agent-3 takes
// it, and history shows it all.
func TestCLI_ADR028Story(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	out, errs, code := codi2(t, bin, srv.URL, "orchestrator", "send", "agent-2", "task.assign", `{"task":"ADR-028"}`)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "sent task.assign to agent-2")

	out, errs, code = codi2(t, bin, srv.URL, "agent-2", "inbox")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `orchestrator -> agent-2 task.assign: {"task":"ADR-028"}`)
	out, _, code = codi2(t, bin, srv.URL, "agent-2", "inbox")
	require.Equal(t, 0, code)
	assert.Empty(t, out, "caught up once")

	out, errs, code = codi2(t, bin, srv.URL, "agent-2", "claim", "task", "ADR-028", "--ttl", "10m", "--fields", `{"status":"in_progress"}`)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "claimed task/ADR-028 rev 1 by agent-2")

	_, errs, code = codi2(t, bin, srv.URL, "agent-3", "claim", "task", "ADR-028")
	assert.Equal(t, 3, code)
	assert.Contains(t, errs, "held by agent-2 at rev 1 until")

	_, errs, code = codi2(t, bin, srv.URL, "agent-2", "release", "task", "ADR-028", "--rev", "1")
	require.Equal(t, 0, code, errs)
	out, errs, code = codi2(t, bin, srv.URL, "agent-3", "claim", "task", "ADR-028", "--json")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `"updated_by":"agent-3"`)
	assert.Contains(t, out, `"status":"in_progress"`, "release kept the record's fields")

	require.Eventually(t, func() bool {
		out, _, code = codi2(t, bin, srv.URL, "", "history", "--since", "1h", "--source", "codi-state")
		return code == 0 && strings.Count(out, "\n") == 4 // claim, lost claim, release, take-over
	}, 30*time.Second, 20*time.Millisecond, out)
	assert.Contains(t, out, `"actor":"agent-3","op":"put","rev":1,"reason":"conflict"`)

	_, errs, code = codi2(t, bin, "nats://127.0.0.1:1", "agent-2", "status", "--timeout", "1s")
	assert.Equal(t, 5, code)
	assert.Equal(t, 1, strings.Count(errs, "\n"), errs)
}
