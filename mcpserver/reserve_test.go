package mcpserver_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/gittest"

	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/mcpserver"
	"github.com/codi2/codi2/state"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gitRepo makes a git repository with one commit and returns its root and
// project name.
func gitRepo(t *testing.T) (string, string) { return gittest.Repo(t) }

func TestTools_Reservations(t *testing.T) {
	e := newEnv(t)
	root, project := gitRepo(t)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "src"), 0o755))
	a2, _, _ := e.sessionWith(t, mcpserver.Config{Agent: "agent-2", Dir: root})
	a3, _, _ := e.sessionWith(t, mcpserver.Config{Agent: "agent-3", Dir: filepath.Join(root, "src")})

	out, isErr := call(t, a2, "reserve", map[string]any{"patterns": []string{"src/**", "./src//**"}, "reason": "refactor"})
	require.False(t, isErr, out)
	assert.Regexp(t, `^reserved src/\*\* until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(exclusive; released when your presence ends\)$`, out)
	sc, err := state.NewClient(e.conn(t), "agent-2")
	require.NoError(t, err)
	held, err := sc.Reservations(context.Background(), project, "agent-2", "")
	require.NoError(t, err)
	require.Len(t, held, 1)
	assert.Equal(t, "agent-2", held[0].Record.BoundTo, "bound to the presence")
	assert.WithinDuration(t, time.Now().Add(cli.DefaultReserveTTL), *held[0].Record.ExpiresAt, time.Minute)
	exp := held[0].Record.ExpiresAt.UTC().Format(time.RFC3339)

	// agent-3 works in src/: its paths are relative to that.
	out, isErr = call(t, a3, "reserve", map[string]any{"patterns": []string{"main.go"}})
	assert.True(t, isErr)
	assert.Equal(t, "src/main.go overlaps agent-2's reservation src/** until "+exp+
		"; nothing was reserved. Ask agent-2 with the send tool or pick other files", out)
	out, isErr = call(t, a3, "reserve", map[string]any{"patterns": []string{"../docs/**"}, "shared": true, "ttl": "1h"})
	require.False(t, isErr, out)
	assert.Contains(t, out, "reserved docs/** until ")
	assert.Contains(t, out, "(shared;")

	out, _ = call(t, a3, "reservations", nil)
	assert.Equal(t, []string{project + " src/** by agent-2 (exclusive, rev 1) until " + exp + " or agent-2's presence ends: refactor",
		project + " docs/** by agent-3 (shared, rev 1) until " + heldUntil(t, sc, project, "agent-3") + " or agent-3's presence ends"},
		strings.Split(out, "\n"))
	out, _ = call(t, a3, "reservations", map[string]any{"path": "pkg/x.go"})
	assert.Equal(t, project+" src/** by agent-2 (exclusive, rev 1) until "+exp+" or agent-2's presence ends: refactor", out, "relative to agent-3's directory")
	out, _ = call(t, a3, "reservations", map[string]any{"agent": "agent-3", "path": "main.go"})
	assert.Equal(t, "none", out)

	_, isErr = call(t, a3, "claim", map[string]any{"kind": "task", "id": "T-1"})
	require.False(t, isErr)
	out, _ = call(t, a2, "who", nil)
	lines := strings.Split(out, "\n")
	require.Len(t, lines, 2, out)
	assert.Regexp(t, `^agent-2 \(seen \S+Z, live until \S+Z\): reserves src/\*\*$`, lines[0])
	assert.Regexp(t, `^agent-3 \(seen \S+Z, live until \S+Z\): reserves docs/\*\*; tasks T-1$`, lines[1])

	out, isErr = call(t, a3, "unreserve", map[string]any{"patterns": []string{"main.go"}})
	assert.True(t, isErr)
	assert.Contains(t, out, `agent-3 holds no reservation of "src/main.go"`)
	out, isErr = call(t, a3, "unreserve", map[string]any{"patterns": []string{"../docs/**"}})
	require.False(t, isErr, out)
	assert.Equal(t, "released docs/**", out)
	out, isErr = call(t, a2, "unreserve", map[string]any{"all": true})
	require.False(t, isErr, out)
	assert.Equal(t, "released src/**", out)
	out, _ = call(t, a2, "unreserve", map[string]any{"all": true})
	assert.Equal(t, "you held no reservations", out)
	out, isErr = call(t, a3, "reserve", map[string]any{"patterns": []string{"main.go"}})
	require.False(t, isErr, "free now: %s", out)
}

func heldUntil(t *testing.T, sc *state.Client, project, agent string) string {
	t.Helper()
	held, err := sc.Reservations(context.Background(), project, agent, "")
	require.NoError(t, err)
	require.Len(t, held, 1)
	return held[0].Record.ExpiresAt.UTC().Format(time.RFC3339)
}

func TestTools_ReservationsBadInput(t *testing.T) {
	e := newEnv(t)
	root, _ := gitRepo(t)
	in, _, _ := e.sessionWith(t, mcpserver.Config{Agent: "agent-1", Dir: root})
	out, _, _ := e.sessionWith(t, mcpserver.Config{Agent: "agent-1", Dir: t.TempDir()})
	named, _, _ := e.sessionWith(t, mcpserver.Config{Agent: "agent-9", Dir: t.TempDir(), Project: "p-1"})
	for _, tt := range []struct {
		name string
		cs   *mcp.ClientSession
		tool string
		args map[string]any
		want string
	}{
		{"no patterns", in, "reserve", map[string]any{"patterns": []string{}}, "at least one"},
		{"bad ttl", in, "reserve", map[string]any{"patterns": []string{"a"}, "ttl": "soon"}, "ttl"},
		{"outside", in, "reserve", map[string]any{"patterns": []string{"../x"}}, "outside the repository"},
		{"bad glob", in, "reserve", map[string]any{"patterns": []string{"a/[b"}}, "pattern"},
		{"unreserve nothing", in, "unreserve", map[string]any{}, "all: true"},
		{"unreserve outside", in, "unreserve", map[string]any{"patterns": []string{"../x"}}, "outside"},
		{"path outside", in, "reservations", map[string]any{"path": "../x"}, "outside"},
		{"not a repo", out, "reserve", map[string]any{"patterns": []string{"a"}}, "pass --project"},
		{"not a repo unreserve", out, "unreserve", map[string]any{"all": true}, "pass --project"},
		{"not a repo list", out, "reservations", nil, "pass --project"},
		{"project, absolute path", named, "reserve", map[string]any{"patterns": []string{"/etc/x"}}, "not in a git repository"},
		// With --project and no repository there is no root to read paths
		// against (a breaker's input: the CLI read them against the
		// working directory, so two agents held one file).
		{"project, no repository", named, "reserve", map[string]any{"patterns": []string{"./a//b"}}, "not in a git repository: patterns are relative to a repository root"},
	} {
		res, isErr := call(t, tt.cs, tt.tool, tt.args)
		assert.True(t, isErr, "%s: %s", tt.name, res)
		assert.Contains(t, res, tt.want, tt.name)
	}
	// who lists no reservations without a project.
	res, _ := call(t, out, "who", nil)
	assert.Regexp(t, `^agent-1 \(seen \S+, live until \S+\)\nagent-9 \(seen \S+, live until \S+\)$`, res)
}

// The server keeps the presence alive while it runs and signs off when the
// session ends, which releases the reservations the reserve tool took.
func TestPresence_HeartbeatAndSignOff(t *testing.T) {
	e := newEnv(t)
	root, project := gitRepo(t)
	a2, _, stop := e.sessionWith(t, mcpserver.Config{Agent: "agent-2", Dir: root, PresenceTTL: 3 * time.Second})
	out, isErr := call(t, a2, "reserve", map[string]any{"patterns": []string{"src/**"}})
	require.False(t, isErr, out)
	sc, err := state.NewClient(e.conn(t), "agent-2")
	require.NoError(t, err)
	ctx := context.Background()
	// Renewed every second: alive past its own lifetime.
	require.Eventually(t, func() bool {
		p, err := sc.Get(ctx, state.KindAgent, "agent-2", 0)
		return err == nil && p.Rev >= 5
	}, 30*time.Second, 100*time.Millisecond)
	held, err := sc.Reservations(ctx, project, "agent-2", "")
	require.NoError(t, err)
	require.Len(t, held, 1, "still held while the server runs")

	stop()
	_, err = sc.Get(ctx, state.KindAgent, "agent-2", 0)
	assert.ErrorIs(t, err, state.ErrNotFound, "signed off")
	held, err = sc.Reservations(ctx, project, "agent-2", "")
	require.NoError(t, err)
	assert.Empty(t, held, "released with the presence")
}
