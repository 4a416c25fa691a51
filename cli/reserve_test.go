package cli_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/cli"
)

// gitRepo makes a repository with one commit in a temp dir, changes the
// working directory to it for the test, and returns its root.
func gitRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, args := range [][]string{{"init", "-q"}, {"-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "first"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "src", "sub"), 0o755))
	t.Chdir(filepath.Join(dir, "src"))
	root, err := filepath.EvalSymlinks(dir)
	require.NoError(t, err)
	return root
}

func TestRun_ReserveUnreserve(t *testing.T) {
	url := startServer(t)
	root := gitRepo(t) // the working directory is <root>/src

	r := run(t, url, "agent-2", "", "reserve", "**", "../docs/*.md", "--reason", "ADR-028", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	require.Len(t, r.lines(), 2)
	first := jsonLine[map[string]any](t, r.lines()[0])
	assert.Equal(t, "src/**", first["pattern"], "relative to the repository root")
	assert.Equal(t, "agent-2", first["holder"])
	assert.Equal(t, "agent-2", first["bound_to"])
	assert.Equal(t, false, first["shared"])
	project := first["project"].(string)
	assert.True(t, strings.HasPrefix(project, "git-"), project)
	exp, err := time.Parse(time.RFC3339Nano, first["expires_at"].(string))
	require.NoError(t, err, "expiry in RFC 3339")
	assert.WithinDuration(t, time.Now().Add(cli.DefaultReserveTTL), exp, time.Minute)
	assert.Equal(t, "docs/*.md", jsonLine[map[string]any](t, r.lines()[1])["pattern"])

	// agent-3 loses: exit 3, one line naming holder, pattern, rev, expiry.
	r = run(t, url, "agent-3", "", "reserve", "../README.md", filepath.Join(root, "src", "main.go"))
	assert.Equal(t, cli.ExitConflict, r.code, r.err)
	assert.Contains(t, r.err, "conflict: src/main.go overlaps src/** reserved by agent-2 (rev 1, until ")
	assert.Contains(t, r.err, "; both match src/main.go)")
	assert.Equal(t, 1, strings.Count(r.err, "\n"), r.err)
	r = run(t, url, "", "", "reservations", "--agent", "agent-3", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Empty(t, r.lines(), "all or none: README.md was not kept")

	// The same file typed four ways is one path.
	for _, p := range []string{"./main.go", "sub/../main.go", ".//main.go", filepath.Join(root, "src/main.go")} {
		r = run(t, url, "", "", "reservations", "--path", p, "--json")
		require.Equal(t, cli.ExitOK, r.code, r.err)
		require.Len(t, r.lines(), 1, p)
		assert.Equal(t, "src/**", jsonLine[map[string]any](t, r.out)["pattern"], p)
	}
	r = run(t, url, "", "", "reservations")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, project+" src/** by agent-2 (exclusive, rev 1) until ")
	assert.Contains(t, r.out, ": ADR-028")
	r = run(t, url, "agent-9", "", "reservations", "--project", "elsewhere")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, "no live reservations in elsewhere\n", r.out, "CODI2_AGENT does not filter; another project is apart")

	// Unreserve exactly the pattern as reserved; an unknown one is exit 4.
	r = run(t, url, "agent-2", "", "unreserve", "src/*.go")
	assert.Equal(t, cli.ExitNotFound, r.code, r.err)
	r = run(t, url, "agent-2", "", "unreserve", "../src/**", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, "src/**", jsonLine[map[string]any](t, r.out)["pattern"])
	r = run(t, url, "agent-3", "", "reserve", "main.go", "--shared", "--ttl", "1m", "--bind=false")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "reserved "+project+" src/main.go by agent-3 (shared, rev 1)")
	r = run(t, url, "agent-2", "", "unreserve", "--all")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, "released "+project+" docs/*.md\n", r.out)
}

func TestRun_HeartbeatWho(t *testing.T) {
	url := startServer(t)
	gitRepo(t)
	r := run(t, url, "", "", "who")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, "no live agents\n", r.out)

	r = run(t, url, "agent-2", "", "heartbeat", "--task", "ADR-028", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	pres := jsonLine[map[string]any](t, r.out)
	assert.Equal(t, "agent", pres["kind"])
	assert.Equal(t, "agent-2", pres["id"])
	fields := pres["fields"].(map[string]any)
	assert.Equal(t, "ADR-028", fields["task"])
	assert.NotEmpty(t, fields["host"])
	assert.NotEmpty(t, fields["branch"])
	r = run(t, url, "agent-2", "", "claim", "task", "ADR-028")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	r = run(t, url, "agent-2", "", "reserve", "**")
	require.Equal(t, cli.ExitOK, r.code, r.err)

	r = run(t, url, "", "", "who")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "agent-2 last heartbeat ")
	assert.Contains(t, r.out, "task=ADR-028")
	assert.Contains(t, r.out, "\n  holds task/ADR-028 rev 1 until ")
	assert.Contains(t, r.out, "\n  reserves src/** (exclusive, rev 1) until ")
	r = run(t, url, "", "", "who", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	who := jsonLine[map[string]any](t, r.out)
	assert.Equal(t, "agent-2", who["agent"])
	assert.Len(t, who["claims"], 1)
	assert.Len(t, who["reservations"], 1)

	// Signing off releases what the CLI bound to the presence.
	r = run(t, url, "agent-2", "", "heartbeat", "--stop")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, "agent-2 signed off\n", r.out)
	r = run(t, url, "agent-3", "", "claim", "task", "ADR-028", "--json")
	require.Equal(t, cli.ExitOK, r.code, "released with the presence: %s", r.err)
	r = run(t, url, "agent-3", "", "reserve", "main.go")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	r = run(t, url, "agent-2", "", "heartbeat", "--stop")
	assert.Equal(t, cli.ExitNotFound, r.code, "no presence to end")
	assert.Contains(t, r.err, "agent-2 has no live presence")
}
