package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/internal/gittest"
)

// gitRepo makes a repository with one commit, changes the working
// directory to its src directory for the test, and returns its root.
func gitRepo(t *testing.T) string {
	t.Helper()
	root, _ := gittest.Repo(t)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "src", "sub"), 0o755))
	t.Chdir(filepath.Join(root, "src"))
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
	// --agent on the command line lists that agent only, as for
	// reservations (it was ignored: every agent listed).
	r = run(t, url, "agent-5", "", "heartbeat")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	r = run(t, url, "agent-5", "", "who")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "agent-2 last heartbeat ", "CODI2_AGENT does not filter")
	assert.Contains(t, r.out, "agent-5 last heartbeat ")
	r = run(t, url, "", "", "who", "--agent", "agent-5")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "agent-5 last heartbeat ")
	assert.NotContains(t, r.out, "agent-2")
	r = run(t, url, "", "", "who", "--agent", "agent-7")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, "agent-7 is not live (no presence: codi2 heartbeat starts one)\n", r.out)

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

// Inputs a breaker found, each a test: a path means one file whatever the
// working directory, a directory means what is under it, a file's name is
// not read as a glob, and text output stays one line per result.
func TestRun_Reserve_BreakerInputs(t *testing.T) {
	url := startServer(t)
	root := gitRepo(t) // cwd <root>/src
	require.NoError(t, os.MkdirAll(filepath.Join(root, "app", "[id]"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "app", "[id]", "page.tsx"), nil, 0o644))

	// A directory, typed any way, covers its files.
	r := run(t, url, "agent-2", "", "reserve", ".", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, "src/**", jsonLine[map[string]any](t, r.out)["pattern"])
	r = run(t, url, "agent-3", "", "reserve", "sub/x.go")
	assert.Equal(t, cli.ExitConflict, r.code, "src/sub/x.go is under src: %s", r.err)

	// A file named with glob characters is that file.
	r = run(t, url, "agent-2", "", "reserve", "../app/[id]/page.tsx", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, `app/\[id]/page.tsx`, jsonLine[map[string]any](t, r.out)["pattern"])
	r = run(t, url, "", "", "reservations", "--path", "../app/[id]/page.tsx", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	require.Len(t, r.lines(), 1, "the file's reservation covers its path")
	r = run(t, url, "agent-3", "", "reserve", "../app/[id]/page.tsx")
	assert.Equal(t, cli.ExitConflict, r.code, r.err)

	// Unreserve of the same spelling finds the reservation whatever was
	// created or removed since: a glob that became a file's name, a file
	// name that became a directory (a breaker's input: exit 4 "holds no
	// reservation of newdir/\\[id]/x").
	r = run(t, url, "agent-5", "", "reserve", "../newdir/[id]/x", "../later", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "newdir", "[id]"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "newdir", "[id]", "x"), nil, 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "later"), 0o755))
	r = run(t, url, "agent-5", "", "unreserve", "../newdir/[id]/x", "../later")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, " newdir/[id]/x\n")
	assert.Contains(t, r.out, " later\n")
	r = run(t, url, "", "", "reservations", "--agent", "agent-5")
	assert.Contains(t, r.out, "no live reservations", "both released")

	// A newline in a name or a reason cannot break or forge a line.
	r = run(t, url, "agent-4", "", "reserve", "../nl\nx", "--reason", "a\nforged line")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, 1, strings.Count(r.out, "\n"), r.out)
	assert.Contains(t, r.out, `nl\nx by agent-4`)
	r = run(t, url, "agent-4", "", "heartbeat", "--task", "T-1\ninjected")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, 1, strings.Count(r.out, "\n"), r.out)
	r = run(t, url, "", "", "who")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, `task=T-1\ninjected`)

	// Too many patterns for one command, and an empty --agent, are named.
	many := []string{"reserve"}
	for i := range 65 {
		many = append(many, fmt.Sprintf("f%d", i))
	}
	r = run(t, url, "agent-2", "", many...)
	assert.Equal(t, cli.ExitUsage, r.code)
	assert.Contains(t, r.err, "65 patterns: at most 64 in one command")
	r = run(t, url, "agent-2", "", "reservations", "--agent", "")
	assert.Equal(t, cli.ExitUsage, r.code)
	assert.Contains(t, r.err, "--agent is empty")
}

// Outside a repository there is no root for paths: reserve and --path are
// refused even with --project (a breaker's input: two agents in different
// directories both held norepo/x), listing works.
func TestRun_Reserve_OutsideRepository(t *testing.T) {
	url := startServer(t)
	t.Chdir(t.TempDir())
	for _, args := range [][]string{{"reserve", "x", "--project", "qq"}, {"unreserve", "x", "--project", "qq"},
		{"reservations", "--path", "x", "--project", "qq"}} {
		r := run(t, url, "agent-2", "", args...)
		assert.Equal(t, cli.ExitUsage, r.code, "%v: %s", args, r.err)
		assert.Contains(t, r.err, "is not in a git repository: patterns and paths are relative to a repository root")
	}
	// Without --project it says what helps: not --project, which the
	// lines above refuse (it said "pass --project NAME" before).
	r := run(t, url, "agent-2", "", "reserve", "x")
	assert.Equal(t, cli.ExitUsage, r.code)
	assert.Contains(t, r.err, "is not in a git repository: run this inside one (reservations --project NAME lists")
	assert.NotContains(t, r.err, "pass --project")
	r = run(t, url, "agent-2", "", "reservations", "--project", "qq")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, "no live reservations in qq\n", r.out)

	// In a repository without commits the project is what is missing.
	root := gittest.Init(t)
	t.Chdir(root)
	r = run(t, url, "agent-2", "", "reserve", "x")
	assert.Equal(t, cli.ExitUsage, r.code)
	assert.Contains(t, r.err, "has no commits yet; pass --project NAME or set CODI2_PROJECT")
	r = run(t, url, "agent-2", "", "reserve", "x", "--project", "qq")
	assert.Equal(t, cli.ExitOK, r.code, r.err)
}
