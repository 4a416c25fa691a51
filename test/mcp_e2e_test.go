package test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// `codi2 mcp` as Claude Code runs it: the built binary as a stdio
// subprocess, driven by the SDK's client.
func TestMCP_Stdio_ToolsAndConflict(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connect := func(agent string) *mcp.ClientSession { return mcpSession(ctx, t, bin, srv.URL, "", agent) }
	a2, a3 := connect("agent-2"), connect("agent-3")
	tools, err := a2.ListTools(ctx, nil)
	require.NoError(t, err)
	raw, _ := json.Marshal(tools)
	assert.Less(t, len(raw), 16*1024, "tools/list size")

	res, err := a2.CallTool(ctx, &mcp.CallToolParams{Name: "claim", Arguments: map[string]any{"kind": "task", "id": "ADR-028"}})
	require.NoError(t, err)
	require.False(t, res.IsError, res.Content[0].(*mcp.TextContent).Text)
	res, err = a3.CallTool(ctx, &mcp.CallToolParams{Name: "claim", Arguments: map[string]any{"kind": "task", "id": "ADR-028"}})
	require.NoError(t, err)
	assert.True(t, res.IsError)
	assert.Contains(t, res.Content[0].(*mcp.TextContent).Text, "held by agent-2")
}

// The reservation tools and presence through the built binary, run in a
// repository as Claude Code runs it (in the project directory): a conflict
// names the holder, pattern and expiry; who shows both agents live; when
// agent-2's server exits it signs off and its reservations go with it.
func TestMCP_Stdio_ReservationsAndPresence(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	root, _ := projectRepo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connect := func(agent string) *mcp.ClientSession { return mcpSession(ctx, t, bin, srv.URL, root, agent) }
	callText := func(cs *mcp.ClientSession, tool string, args map[string]any) (string, bool) {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
		require.NoError(t, err)
		return res.Content[0].(*mcp.TextContent).Text, res.IsError
	}
	a2, a3 := connect("agent-2"), connect("agent-3")
	out, isErr := callText(a2, "reserve", map[string]any{"patterns": []string{"src/**"}})
	require.False(t, isErr, out)
	out, isErr = callText(a3, "reserve", map[string]any{"patterns": []string{"src/main.go"}})
	assert.True(t, isErr)
	assert.Regexp(t, `^src/main.go overlaps agent-2's reservation src/\*\* until \S+Z; nothing was reserved`, out)
	out, _ = callText(a3, "reservations", map[string]any{"path": "src/main.go"})
	assert.Regexp(t, `^git-[0-9a-f]{12} src/\*\* by agent-2 \(exclusive, rev 1\) until \S+Z or agent-2's presence ends$`, out)
	require.Eventually(t, func() bool {
		out, _ = callText(a3, "who", nil)
		return strings.Contains(out, "agent-2 (seen ") && strings.Contains(out, "agent-3 (seen ")
	}, 20*time.Second, 50*time.Millisecond, "both servers heartbeat at start: %s", out)
	assert.Contains(t, out, "reserves src/**")

	require.NoError(t, a2.Close(), "agent-2's session ends: its server exits and signs off")
	require.Eventually(t, func() bool {
		out, isErr = callText(a3, "reserve", map[string]any{"patterns": []string{"src/main.go"}})
		return !isErr
	}, 20*time.Second, 50*time.Millisecond, out)
}

// A live Claude Code session learns of new mail through the channel
// notification: read the raw JSON-RPC the binary writes on stdout.
func TestMCP_Stdio_ChannelNotification(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	cmd := exec.Command(bin, "mcp", "--agent", "agent-2", "--nats-url", srv.URL)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	write := func(s string) {
		_, err := io.WriteString(stdin, s+"\n")
		require.NoError(t, err)
	}
	next := func(match string) string {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				require.True(t, ok, "stdout closed")
				if strings.Contains(l, match) {
					return l
				}
			case <-deadline:
				t.Fatalf("no line with %q", match)
			}
		}
	}
	write(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	init := next(`"id":1`)
	assert.Contains(t, init, `"claude/channel":{}`, "the server offers Claude Code's channel")
	write(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)

	nc := connect(t, srv.URL, "orchestrator")
	orch, err := bus.NewAgent("orchestrator", nc)
	require.NoError(t, err)
	// The live inbox subscribes when the server starts; send until one
	// notification shows (the first send may precede the subscription).
	got := make(chan string, 1)
	go func() { got <- next(`"method":"notifications/claude/channel"`) }()
	var line string
	require.Eventually(t, func() bool {
		select {
		case line = <-got:
			return true
		default:
			_, err := orch.Send(context.Background(), "agent-2", "task.assign", []byte(`{"task":"ADR-028"}`))
			assert.NoError(t, err)
			return false
		}
	}, 20*time.Second, 200*time.Millisecond)
	var note struct {
		Params struct {
			Content string            `json:"content"`
			Meta    map[string]string `json:"meta"`
		} `json:"params"`
	}
	require.NoError(t, json.Unmarshal([]byte(line), &note))
	assert.Equal(t, "new mail for agent-2 from orchestrator: task.assign (fetch it with the inbox tool)", note.Params.Content)
	assert.Equal(t, "orchestrator", note.Params.Meta["from"])
}

// Every tool through the built binary: its happy path and its error or
// conflict path, each a tool result (isError), never a broken session.
func TestMCP_Stdio_EveryTool(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	root, _ := projectRepo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	connect := func(agent string) *mcp.ClientSession { return mcpSession(ctx, t, bin, srv.URL, root, agent) }
	a2, a3 := connect("agent-2"), connect("agent-3")
	tools, err := a2.ListTools(ctx, nil)
	require.NoError(t, err)
	raw, _ := json.Marshal(tools)
	assert.Less(t, len(raw), 16*1024, "tools/list size")
	seen := map[string]bool{}
	for _, tc := range []struct {
		cs   *mcp.ClientSession
		tool string
		args map[string]any
		ok   bool
		want string
	}{
		{a3, "send", map[string]any{"to": "agent-2", "type": "review", "data": "main.go"}, true, "sent #"},
		{a3, "send", map[string]any{"to": "a.b", "type": "x"}, false, "invalid token"},
		{a2, "inbox", nil, true, "agent-3 -> agent-2 review: main.go"},
		{a2, "inbox", map[string]any{"max": -1}, true, "none"},
		{a2, "claim", map[string]any{"kind": "task", "id": "T-1"}, true, "claimed task/T-1 rev 1 by agent-2"},
		{a3, "claim", map[string]any{"kind": "task", "id": "T-1"}, false, "task/T-1 is held by agent-2 (rev 1) until "},
		{a2, "renew", map[string]any{"kind": "task", "id": "T-1", "rev": 1}, true, "renewed task/T-1 rev 2"},
		{a3, "renew", map[string]any{"kind": "task", "id": "T-1", "rev": 2}, false, "held by agent-2"},
		{a3, "release", map[string]any{"kind": "task", "id": "T-1", "rev": 2, "delete": true}, false, "held by agent-2"},
		{a2, "release", map[string]any{"kind": "task", "id": "T-1", "rev": 2}, true, "released task/T-1 rev 3"},
		{a2, "release", map[string]any{"kind": "task", "id": "T-1", "rev": 2}, false, "retry with its rev"},
		{a2, "reserve", map[string]any{"patterns": []string{"src/**"}}, true, "reserved src/** until "},
		{a3, "reserve", map[string]any{"patterns": []string{"src/a.go"}}, false, "src/a.go overlaps agent-2's reservation src/** until "},
		{a3, "reservations", map[string]any{"path": "src/a.go"}, true, "src/** by agent-2 (exclusive, rev 1) until "},
		{a3, "reservations", map[string]any{"path": "../x"}, false, "outside the repository"},
		{a2, "who", nil, true, "agent-2 (seen "},
		{a3, "unreserve", map[string]any{"patterns": []string{"src/**"}}, false, `agent-3 holds no reservation of "src/**"`},
		{a2, "unreserve", map[string]any{"patterns": []string{"src/**"}}, true, "released src/**"},
		{a2, "log", map[string]any{"category": "decision", "data": `{"why":"tests first"}`}, true, "logged #"},
		{a2, "log", map[string]any{"category": "a.b", "data": "x"}, false, "invalid token"},
		{a3, "history", map[string]any{"since": "1h", "source": "codi-state", "limit": 1}, true, "codi-state state"},
		{a3, "history", map[string]any{"since": "yesterday"}, false, "not a time"},
		{a3, "state", map[string]any{"kind": "task", "id": "T-1"}, true, "task/T-1 rev 3 by agent-2"},
		{a3, "state", map[string]any{"kind": "task", "id": "T-9"}, false, "not found"},
	} {
		seen[tc.tool] = true
		res, err := tc.cs.CallTool(ctx, &mcp.CallToolParams{Name: tc.tool, Arguments: tc.args})
		require.NoError(t, err, "%s %v: a tool error is a result", tc.tool, tc.args)
		text := res.Content[0].(*mcp.TextContent).Text
		assert.Equal(t, !tc.ok, res.IsError, "%s %v: %s", tc.tool, tc.args, text)
		assert.Contains(t, text, tc.want, "%s %v", tc.tool, tc.args)
	}
	for _, tool := range tools.Tools {
		assert.True(t, seen[tool.Name], "tool %s not exercised", tool.Name)
	}
}

// mcpSession starts `codi2 mcp` for agent against url as a stdio
// subprocess in dir ("" for the test's), as Claude Code runs it, and
// connects the SDK's client to it; the session is closed when the test
// ends.
func mcpSession(ctx context.Context, t *testing.T, bin, url, dir, agent string) *mcp.ClientSession {
	t.Helper()
	cmd := exec.Command(bin, "mcp", "--agent", agent, "--nats-url", url)
	cmd.Dir = dir
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}
