package cli_test

import (
	"os"
	"path/filepath"
	"strconv"
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
	assert.Contains(t, r.out, "3 lines (0 imported before), 4 imported: 3 events (2 recovered from torn lines), 1 unparseable; 2 state commands; 0 partial line left (dry run: nothing published)")

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

	// A dry run needs no server: it reads and counts the whole file.
	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	r = run(t, dead, "", "", "import", "v1", file, "--dry-run", "--timeout", "1s")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "3 lines (0 imported before), 4 imported: 3 events (2 recovered from torn lines), 1 unparseable; 2 state commands; 0 partial line left (dry run: nothing published)")
	r = run(t, dead, "", "", "import", "v1", file, "--timeout", "1s")
	assert.Equal(t, cli.ExitUnreachable, r.code, r.err)

	for _, args := range [][]string{{"import"}, {"import", "v1"}, {"import", "v1", file, "--agent", "a.b"}} {
		r := run(t, url, "", "", args...)
		assert.Equal(t, cli.ExitUsage, r.code, "%v: %s", args, r.err)
	}
	r = run(t, url, "", "", "import", "v1", "/nonexistent")
	assert.Equal(t, cli.ExitError, r.code, r.err)
}
