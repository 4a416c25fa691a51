package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/gittest"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// codi2 runs the built binary's verb as agent against url and returns its
// stdout, stderr and exit code, as a shell-using agent sees them.
func codi2(t *testing.T, bin, url, agent string, args ...string) (string, string, int) {
	t.Helper()
	return codi2In(t, "", bin, url, agent, args...)
}

// codi2In is codi2 run in the working directory dir ("" for the test's).
func codi2In(t *testing.T, dir, bin, url, agent string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
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

// gitRepo makes a repository with one commit and a src directory and
// returns its root.
func gitRepo(t *testing.T) string {
	t.Helper()
	root, _ := gittest.Repo(t)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "src"), 0o755))
	return root
}

// The ADR-028 story through the agent command line of the built binary, in
// a git repository: the orchestrator sends, agent-2 catches up, announces
// its presence, claims the task and reserves src/**; agent-3 loses both
// with exit 3 and sees the holder; agent-2 releases the claim by hand and
// takes it again, then stops heartbeating, and everything it held is
// released within its presence TTL, so agent-3 gets both; history shows it
// all.
func TestCLI_ADR028Story(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	repo := gitRepo(t)
	run := func(agent string, args ...string) (string, string, int) {
		t.Helper()
		return codi2In(t, repo, bin, srv.URL, agent, args...)
	}
	out, errs, code := run("orchestrator", "send", "agent-2", "task.assign", `{"task":"ADR-028"}`)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "sent task.assign to agent-2")

	out, errs, code = run("agent-2", "inbox")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `orchestrator -> agent-2 task.assign: {"task":"ADR-028"}`)
	out, _, code = run("agent-2", "inbox")
	require.Equal(t, 0, code)
	assert.Empty(t, out, "caught up once")

	const presence = 3 * time.Second
	_, errs, code = run("agent-2", "heartbeat", "--ttl", presence.String(), "--task", "ADR-028")
	require.Equal(t, 0, code, errs)
	out, errs, code = run("agent-2", "claim", "task", "ADR-028", "--ttl", "10m", "--fields", `{"status":"in_progress"}`)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "claimed task/ADR-028 rev 1 by agent-2")
	out, errs, code = run("agent-2", "reserve", "src/**", "--ttl", "10m", "--reason", "ADR-028")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "src/** by agent-2 (exclusive, rev 1)")

	_, errs, code = run("agent-3", "claim", "task", "ADR-028")
	assert.Equal(t, 3, code)
	assert.Contains(t, errs, "held by agent-2 at rev 1 until")
	_, errs, code = run("agent-3", "reserve", "src/main.go")
	assert.Equal(t, 3, code)
	assert.Contains(t, errs, "src/main.go overlaps src/** reserved by agent-2 (rev 1, until ")
	out, errs, code = run("", "who")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "holds task/ADR-028 rev 1")
	assert.Contains(t, out, "reserves src/** (exclusive, rev 1)")

	_, errs, code = run("agent-2", "release", "task", "ADR-028", "--rev", "1")
	require.Equal(t, 0, code, errs)
	out, errs, code = run("agent-2", "claim", "task", "ADR-028", "--json")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `"status":"in_progress"`, "release kept the record's fields")
	out, errs, code = run("agent-2", "heartbeat", "--ttl", presence.String())
	require.Equal(t, 0, code, errs)
	beat := time.Now()

	// agent-2 stops heartbeating: within its presence TTL (plus the lease
	// sweep) agent-3 gets the task and the files.
	ok := assert.Eventually(t, func() bool {
		_, _, code = run("agent-3", "claim", "task", "ADR-028")
		return code == 0
	}, 30*time.Second, 100*time.Millisecond)
	if !ok {
		o1, _, _ := run("", "list", "agent", "--json")
		o2, _, _ := run("", "get", "task", "ADR-028", "--json")
		o3, _, _ := run("", "history", "--since", "1h", "--source", "codi-state")
		t.Fatalf("agents: %s\ntask: %s\nhistory:\n%s", o1, o2, o3)
	}
	freed := time.Since(beat)
	assert.Less(t, freed, presence+5*time.Second, "released within the presence TTL (and the sweep), not the claim's 10m")
	assert.GreaterOrEqual(t, freed, presence-time.Second, "not before the presence ended")
	_, errs, code = run("agent-3", "reserve", "src/main.go")
	require.Equal(t, 0, code, errs)

	require.Eventually(t, func() bool {
		out, _, code = run("", "history", "--since", "1h", "--source", "codi-state")
		return code == 0 && strings.Count(out, `"op":"release"`) == 2 && strings.Contains(out, `"actor":"agent-3","op":"merge"`)
	}, 30*time.Second, 50*time.Millisecond, out)
	assert.Contains(t, out, `"actor":"agent-3","op":"put","rev":1,"reason":"conflict"`, "the lost claim")
	assert.Contains(t, out, `"op":"expire"`, "the presence's end")
	assert.Contains(t, out, `"actor":"codi-state","op":"release"`)

	_, errs, code = codi2(t, bin, "nats://127.0.0.1:1", "agent-2", "status", "--timeout", "1s")
	assert.Equal(t, 5, code)
	assert.Equal(t, 1, strings.Count(errs, "\n"), errs)
}

// watch follows events across a server restart (a new user's input: it
// exited 5 with "connection closed"), saying on standard error that it
// lost the server and reconnected.
func TestCLI_WatchSurvivesRestart(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	var out, errb proctest.Buffer
	cmd := exec.Command(bin, "watch", "task")
	cmd.Env = append(cmd.Environ(), "CODI2_NATS_URL="+srv.URL)
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Claims until watch prints one (it subscribes a moment after it starts).
	seen := func(prefix string) {
		t.Helper()
		n := 0
		require.Eventually(t, func() bool {
			n++
			codi2(t, bin, srv.URL, "agent-2", "claim", "task", fmt.Sprintf("%s-%d", prefix, n), "--bind=false")
			return strings.Contains(out.String(), "codi.state.evt.task."+prefix+"-")
		}, 30*time.Second, 200*time.Millisecond, "stdout: %s\nstderr: %s", &out, &errb)
	}
	seen("before")
	srv = srv.Restart(t)
	require.Eventually(t, func() bool { return strings.Contains(errb.String(), "reconnected") }, 30*time.Second, 20*time.Millisecond, errb.String())
	seen("after")
	assert.Contains(t, errb.String(), "codi2: lost the server at "+srv.URL)
	require.Nil(t, cmd.ProcessState, "watch is still running")
}
