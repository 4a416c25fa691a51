package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/v1import"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRun_ImportV1(t *testing.T) {
	url := startServer(t)
	file := filepath.Join(t.TempDir(), "codi.log")
	require.NoError(t, os.WriteFile(file, []byte(`{"action":"TASK_ASSIGN","from":"o","to":"agent-1","task":"ADR-1"}`+"\n"+
		`{"action":"STATUS_UPDATE","from":"agent-1","task":"ADR-1","status":"done"}{"action":"TASK_ACK","task":"ADR-1"}`+"\n"+
		"torn\xff line\n"), 0o644))

	r := run(t, url, "", "", "import", "v1", file, "--dry-run")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "3 lines (0 imported before), 4 to import: 3 events (2 recovered from torn lines), 1 unparseable; 2 state commands; 0 partial lines left (dry run: nothing published)")

	r = run(t, url, "", "", "import", "v1", file, "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	sum := jsonLine[v1import.Summary](t, r.lines()[0])
	assert.Equal(t, 4, sum.Imported)
	r = run(t, url, "", "", "get", "task", "ADR-1", "--json")
	assert.Contains(t, r.out, `"status":"done"`)
	assert.Contains(t, r.out, `"updated_by":"v1-import"`)
	r = run(t, url, "", "", "import", "v1", file)
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "3 lines (3 imported before), 0 imported")
	one := filepath.Join(t.TempDir(), "one.log")
	require.NoError(t, os.WriteFile(one, []byte(`{"action":"TASK_ASSIGN","from":"o","to":"agent-1","task":"ADR-2"}`+"\n"), 0o644))
	r = run(t, url, "", "", "import", "v1", one)
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "1 line (0 imported before), 1 imported: 1 event (0 recovered from torn lines), 0 unparseable; 1 state command; 0 partial lines left")

	// A dry run needs no server: it reads and counts the whole file.
	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	r = run(t, dead, "", "", "import", "v1", file, "--dry-run", "--timeout", "1s")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "3 lines (0 imported before), 4 to import: 3 events (2 recovered from torn lines), 1 unparseable; 2 state commands; 0 partial lines left (dry run: nothing published)")
	r = run(t, dead, "", "", "import", "v1", file, "--timeout", "1s")
	assert.Equal(t, cli.ExitUnreachable, r.code, r.err)

	for _, args := range [][]string{{"import"}, {"import", "v1"}, {"import", "v1", file, "--agent", "a.b"}} {
		r := run(t, url, "", "", args...)
		assert.Equal(t, cli.ExitUsage, r.code, "%v: %s", args, r.err)
	}
	r = run(t, url, "", "", "import", "v1", "/nonexistent")
	assert.Equal(t, cli.ExitError, r.code, r.err)
	// Every file is checked before any is imported (a new user's input:
	// the files before a mistyped name were imported, then it failed).
	fresh := filepath.Join(t.TempDir(), "fresh.log")
	require.NoError(t, os.WriteFile(fresh, []byte(`{"action":"TASK_ASSIGN","from":"o","to":"agent-1","task":"F-1"}`+"\n"), 0o644))
	for _, bad := range []string{"/nonexistent", t.TempDir()} {
		r = run(t, url, "", "", "import", "v1", fresh, bad)
		assert.Equal(t, cli.ExitError, r.code, r.err)
		assert.Contains(t, r.err, bad)
		assert.Contains(t, r.err, "(nothing imported)")
		assert.Empty(t, r.out, "no summary: nothing was read")
	}
	r = run(t, url, "", "", "get", "task", "F-1")
	assert.Equal(t, cli.ExitNotFound, r.code, "fresh.log was not imported: %s", r.out)
}

// Issue 18: refused updates and oversized lines are in the summary (text
// and --json), a file without a first line says so, an interrupted import
// says how far it got (exit 1, CONTRACT's error).
func TestRun_ImportV1_RefusedOversizedAndInterrupted(t *testing.T) {
	url := startServer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "codi.log")
	require.NoError(t, os.WriteFile(file, []byte(`{"action":"TASK_ASSIGN","task":"A-1","to":"a"}`+"\n"+
		`{"action":"STATUS_UPDATE","task":"M-0","status":"`+strings.Repeat("z", 600_000)+`"}`+"\n"+
		`{"action":"TASK_ASSIGN","task":"`+strings.Repeat("x", 300)+`","to":"a"}`+"\n"+
		`{"action":"NOTE","pad":"`+strings.Repeat("p", 1_500_000)+`"}`+"\n"), 0o644))
	r := run(t, url, "", "", "import", "v1", file)
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "4 lines (0 imported before), 4 imported: 4 events (0 recovered from torn lines), 0 unparseable, "+
		"1 oversized (too large for a message: kept as length, SHA-256 and first 1 KiB); 1 state command; "+
		`2 state updates refused, not applied (byte 47, task "M-0": a record of about 601064 bytes is above the state service's limit of 100000; `+
		`byte 600099, task "`+strings.Repeat("x", 64)+`…": the task id is no state id: subjects: invalid token: 300 bytes, the limit is 256); 0 partial lines left`)
	r = run(t, url, "", "", "import", "v1", file, "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	sum := jsonLine[v1import.Summary](t, r.lines()[0])
	assert.Equal(t, 2, sum.RefusedBefore)
	assert.Contains(t, r.out, `"oversized":0,"refused":0,`)

	empty := filepath.Join(dir, "blank.log")
	require.NoError(t, os.WriteFile(empty, []byte("\n\n"), 0o644))
	r = run(t, url, "", "", "import", "v1", empty)
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "no first line yet")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := cli.Run(ctx, []string{"import", "v1", file}, cli.IO{Out: &out, Err: &errb,
		Getenv: func(k string) string { return map[string]string{"CODI2_NATS_URL": url}[k] }})
	assert.Equal(t, cli.ExitError, code, errb.String())
	assert.Contains(t, errb.String(), "import interrupted: "+file+": stopped at byte 0; the checkpoint is at byte 0 (0 lines): run the import again to continue from there")
}
