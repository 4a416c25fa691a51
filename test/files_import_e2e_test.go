package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
	"github.com/codi2/codi2/v1import"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// codi2 watch --files as a child process records a repository's changes,
// keeps going across a crash and restart of codi2 serve (the change made
// while it was down is recorded once it is back), and exits 0 on SIGTERM.
func TestCLI_WatchFiles_Binary(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs codi2 serve")
	}
	bin := proctest.Build(t)
	srv := proctest.Start(t, bin, t.TempDir(), 0) // killed below: no exit-0 check at the end
	waitServices(t, srv)
	repo := gitRepo(t)
	w := exec.Command(bin, "watch", "--files", "--settle", "20ms", "--json")
	w.Dir = filepath.Join(repo, "src") // the repository root is found from here
	w.Env = append(w.Environ(), "CODI2_NATS_URL="+srv.URL, "CODI2_AGENT=agent-5")
	out, errb := &proctest.Buffer{}, &proctest.Buffer{}
	w.Stdout, w.Stderr = out, errb
	require.NoError(t, w.Start())
	exited := make(chan error, 1)
	go func() { exited <- w.Wait() }()
	t.Cleanup(func() { _ = w.Process.Kill() })

	// The watcher may not be watching yet: write until a change shows.
	require.Eventually(t, func() bool {
		_ = os.WriteFile(filepath.Join(repo, "src", "a.go"), []byte("package a // "+time.Now().String()), 0o644)
		return strings.Contains(out.String(), `"path":"src/a.go"`)
	}, 20*time.Second, 100*time.Millisecond, "stderr: %s", errb.String())

	srv.Kill()
	require.NoError(t, os.WriteFile(filepath.Join(repo, "during.txt"), []byte("written while codi2 was down"), 0o644))
	srv = proctest.Start(t, srv.Bin(), srv.DataDir, srv.Port())
	waitServices(t, srv)
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"path":"during.txt"`) },
		30*time.Second, 50*time.Millisecond, "stderr: %s", errb.String())

	require.NoError(t, w.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "exit 0 on SIGTERM; stderr: %s", errb.String())
	case <-time.After(20 * time.Second):
		t.Fatal("watch --files did not stop on SIGTERM")
	}
	hist, errs, code := codi2(t, bin, srv.URL, "", "history", "--source", "agent-5", "--category", "file", "--json")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, hist, "during.txt")
	assert.Contains(t, hist, `"subject":"codi.audit.log.agent-5.file.create"`)
	require.Equal(t, 0, srv.Stop(20*time.Second), srv.Logs())
}

// codi2 import v1 of the built binary: a summary, the tasks' state, the
// filtered list, and a second import that adds nothing.
func TestCLI_ImportV1_Binary(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	log := filepath.Join(t.TempDir(), "codi.log")
	require.NoError(t, os.WriteFile(log, []byte(
		`{"ts":"2026-01-01T00:00:00Z","action":"TASK_ASSIGN","from":"orchestrator","to":"agent-1","task":"ADR-028"}`+"\n"+
			`{"ts":"2026-01-01T00:00:01Z","action":"TASK_ACK","from":"agent-1","task":"ADR-028"}{"ts":"2026-01-01T00:00:02Z","action":"STATUS_UPDATE","from":"agent-1","task":"ADR-028","status":"in_progress"}`+"\n"+
			`{"ts":"2026-01-01T00:00:03Z","action":"TASK_ASS{"ts":"2026-01-01T00:00:04Z","action":"TASK_ASSIGN","from":"orchestrator","to":"agent-2","task":"ADR-029"}`+"\n"+
			"\xff\xfe torn\n"), 0o644))
	out, errs, code := codi2(t, bin, srv.URL, "", "import", "v1", log, "--json")
	require.Equal(t, 0, code, errs)
	var sum v1import.Summary
	require.NoError(t, json.Unmarshal([]byte(out), &sum), out)
	assert.Equal(t, 4, sum.Lines)
	assert.Equal(t, 4, sum.Events)
	assert.Equal(t, 2, sum.Unparseable, "the torn head and the non-UTF-8 line")
	assert.Equal(t, 3, sum.StateCommands)

	out, errs, code = codi2(t, bin, srv.URL, "", "list", "task", "--since", "1h", "--where", "assignee=agent-1", "--json")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `"id":"ADR-028"`)
	assert.Contains(t, out, `"status":"in_progress"`)
	assert.NotContains(t, out, "ADR-029")

	out, errs, code = codi2(t, bin, srv.URL, "", "import", "v1", log)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "4 lines (4 imported before), 0 imported")
}

// Issue 18 with the built binary: a first line without its newline
// imports nothing yet, and the file keeps its id as v1 ends the line and
// appends (the old code imported PH-0 twice, under two ids); Ctrl-C says
// how far the import got and that a re-run continues, exit 1.
func TestCLI_ImportV1_Binary_IdentityAndInterrupt(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	ph := filepath.Join(t.TempDir(), "ph.jsonl")
	require.NoError(t, os.WriteFile(ph, []byte(`{"ts":"2026-07-03T00:00:00Z","action":"TASK_ASSIGN","from":"o","to":"a","task":"PH-0"}`), 0o644))
	out, errs, code := codi2(t, bin, srv.URL, "", "import", "v1", ph)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "no first line yet")
	for _, imported := range []string{"1 imported", "0 imported"} {
		f, err := os.OpenFile(ph, os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteString("\n")
		require.NoError(t, err)
		require.NoError(t, f.Close())
		out, errs, code = codi2(t, bin, srv.URL, "", "import", "v1", ph)
		require.Equal(t, 0, code, errs)
		assert.Contains(t, out, imported+": ")
	}
	out, errs, code = codi2(t, bin, srv.URL, "", "get", "task", "PH-0", "--json")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `"rev":1,`)

	// Ctrl-C once the import's first update command is applied (it
	// creates the checkpoint record; 200,000 lines take seconds more).
	big := filepath.Join(t.TempDir(), "big.jsonl")
	var b strings.Builder
	for i := range 200_000 {
		fmt.Fprintf(&b, `{"ts":"2026-07-03T00:00:00Z","action":"TASK_ASSIGN","from":"o","to":"a","task":"T-%d"}`+"\n", i%1000)
	}
	require.NoError(t, os.WriteFile(big, []byte(b.String()), 0o644))
	f, err := os.Open(big)
	require.NoError(t, err)
	id, ok, err := v1import.FileID(f)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, f.Close())
	cmd := exec.Command(bin, "import", "v1", big)
	cmd.Env = append(cmd.Environ(), "CODI2_NATS_URL="+srv.URL)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	nc := connect(t, srv.URL, "e2e-probe")
	sc, err := state.NewClient(nc, "e2e-probe")
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := sc.Get(context.Background(), v1import.CheckpointKind, id, 0)
		return err == nil
	}, 60*time.Second, 20*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(os.Interrupt))
	defer func() {
		// What the import had sent is applied before the server stops,
		// so that its stop is not under load.
		st, err := js.Stream(context.Background(), "CODI_STATE")
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			_, err := sc.Get(context.Background(), v1import.CheckpointKind, id, st.CachedInfo().State.LastSeq)
			return err == nil
		}, 120*time.Second, 10*time.Millisecond)
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "the import ended before the interrupt: %s", stdout.String())
	assert.Equal(t, 1, ee.ExitCode())
	assert.Regexp(t, `^codi2: v1import: import interrupted: `+regexp.QuoteMeta(big)+`: stopped at byte \d+; the checkpoint is at byte \d+ \(\d+ lines\): `+
		`run the import again to continue from there: context canceled\n$`, stderr.String())
}

// waitServices waits until srv's state and audit services answer.
func waitServices(t *testing.T, srv *proctest.Server) {
	t.Helper()
	nc := connect(t, srv.URL, "e2e-probe")
	for _, subj := range []string{subjects.StateStatus, subjects.AuditStatus} {
		require.Eventually(t, func() bool {
			_, err := nc.Request(subj, nil, time.Second)
			return err == nil
		}, 30*time.Second, 20*time.Millisecond, "%s answers\n%s", subj, srv.Logs())
	}
}
