package mcpserver_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/servertest"
	"github.com/codi2/codi2/mcpserver"
	"github.com/codi2/codi2/state"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type env struct {
	url string
}

func newEnv(t *testing.T) env {
	t.Helper()
	return env{url: servertest.Start(t, false).Bus().ClientURL()}
}

func (e env) conn(t *testing.T) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(e.url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// session runs agent's MCP server on an in-memory transport and returns a
// connected client session and the notifications it received.
func (e env) session(t *testing.T, agent string) (*mcp.ClientSession, *notes) {
	t.Helper()
	cs, n, _ := e.sessionWith(t, mcpserver.Config{Agent: agent, Dir: t.TempDir()})
	return cs, n
}

// sessionWith is session with a whole Config; stop ends the session and
// waits for Run to return.
func (e env) sessionWith(t *testing.T, cfg mcpserver.Config) (*mcp.ClientSession, *notes, func()) {
	t.Helper()
	s, err := mcpserver.New(cfg, e.conn(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	ct, st := mcp.NewInMemoryTransports()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, st) }()
	n := &notes{}
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, &mcp.ClientOptions{
		LoggingMessageHandler: func(_ context.Context, r *mcp.LoggingMessageRequest) {
			n.add("log: " + r.Params.Data.(string))
		},
		ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
			n.add("updated: " + r.Params.URI)
		},
	})
	cs, err := c.Connect(ctx, ct, nil)
	require.NoError(t, err)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cs.Close()
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return cs, n, stop
}

type notes struct {
	ch chan string
}

func (n *notes) add(s string) {
	if n.ch == nil {
		return
	}
	select {
	case n.ch <- s:
	default: // the test has seen enough
	}
}

func call(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) (string, bool) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	require.NoError(t, err, "a tool error is a result, never a protocol error")
	require.Len(t, res.Content, 1)
	return res.Content[0].(*mcp.TextContent).Text, res.IsError
}

// The whole tools/list answer stays small: a model pays for it every turn.
func TestToolsList_Size(t *testing.T) {
	cs, _ := newEnv(t).session(t, "agent-1")
	res, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)
	b, err := json.Marshal(res)
	require.NoError(t, err)
	t.Logf("tools/list: %d tools, %d bytes", len(res.Tools), len(b))
	assert.Less(t, len(b), 16*1024)
	assert.LessOrEqual(t, len(res.Tools), 12)
	for _, tool := range res.Tools {
		assert.Less(t, len(tool.Description), 120, tool.Name)
	}
}

// A lost claim names the lease's holder, not the record's last writer: a
// field merged into a held task by another agent does not make it the
// holder.
func TestTools_Claim_NamesHolderNotLastWriter(t *testing.T) {
	e := newEnv(t)
	a2, _ := e.session(t, "agent-2")
	a3, _ := e.session(t, "agent-3")
	out, isErr := call(t, a2, "claim", map[string]any{"kind": "task", "id": "T-9", "ttl": "10m"})
	require.False(t, isErr, out)
	lead, err := state.NewClient(e.conn(t), "lead")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = lead.Apply(ctx, "task", "T-9", state.Command{Op: state.OpMerge, Fields: map[string]any{"priority": "high"}, ExpectRev: state.Expect(1)})
	require.NoError(t, err)
	out, isErr = call(t, a3, "claim", map[string]any{"kind": "task", "id": "T-9"})
	assert.True(t, isErr)
	assert.Contains(t, out, "task/T-9 is held by agent-2 (rev 2) until ")
}

func TestTools_MailClaimsLogState(t *testing.T) {
	e := newEnv(t)
	orch, _ := e.session(t, "orchestrator")
	a2, _ := e.session(t, "agent-2")
	a3, _ := e.session(t, "agent-3")

	out, isErr := call(t, orch, "send", map[string]any{"to": "agent-2", "type": "task.assign", "data": `{"task":"ADR-028"}`, "importance": "high", "thread": "t1"})
	require.False(t, isErr, out)
	assert.Equal(t, "sent #1 to agent-2", out)
	out, _ = call(t, a2, "inbox", nil)
	assert.Contains(t, out, `orchestrator -> agent-2 task.assign [high]: {"task":"ADR-028"}`)
	out, _ = call(t, a2, "inbox", map[string]any{"max": 5})
	assert.Equal(t, "none", out, "acked")

	out, isErr = call(t, a2, "claim", map[string]any{"kind": "task", "id": "ADR-028", "ttl": "10m", "fields": map[string]any{"status": "in_progress"}})
	require.False(t, isErr, out)
	assert.Contains(t, out, "claimed task/ADR-028 rev 1 by agent-2")
	out, isErr = call(t, a3, "claim", map[string]any{"kind": "task", "id": "ADR-028"})
	assert.True(t, isErr)
	assert.Contains(t, out, "task/ADR-028 is held by agent-2 (rev 1) until ")
	assert.Contains(t, out, "ask them with the send tool")

	out, isErr = call(t, a2, "renew", map[string]any{"kind": "task", "id": "ADR-028", "rev": 1, "ttl": "20m"})
	require.False(t, isErr, out)
	out, isErr = call(t, a2, "renew", map[string]any{"kind": "task", "id": "ADR-028", "rev": 1})
	assert.True(t, isErr, "stale rev: %s", out)
	assert.Contains(t, out, "held by agent-2 (rev 2)")
	out, isErr = call(t, a2, "release", map[string]any{"kind": "task", "id": "ADR-028", "rev": 2})
	require.False(t, isErr, out)
	assert.Contains(t, out, "released task/ADR-028 rev 3")
	out, isErr = call(t, a2, "release", map[string]any{"kind": "task", "id": "ADR-028", "rev": 2})
	assert.True(t, isErr)
	assert.Contains(t, out, "retry with its rev")
	out, isErr = call(t, a3, "claim", map[string]any{"kind": "task", "id": "ADR-028"})
	require.False(t, isErr, out)
	out, isErr = call(t, a3, "release", map[string]any{"kind": "task", "id": "ADR-028", "rev": 4, "delete": true})
	require.False(t, isErr, out)
	assert.Equal(t, "deleted task/ADR-028", out)

	for _, id := range []string{"src/a.go", "src/b.go"} {
		_, isErr = call(t, a2, "claim", map[string]any{"kind": "file", "id": id})
		require.False(t, isErr)
	}
	out, _ = call(t, a3, "state", map[string]any{"kind": "file", "id": "src/a.go"})
	assert.True(t, strings.HasPrefix(out, "file/src/a.go rev 1 by agent-2"), out)
	out, _ = call(t, a3, "state", map[string]any{"kind": "file", "prefix": "src/"})
	assert.Len(t, strings.Split(out, "\n"), 2)
	out, isErr = call(t, a3, "state", map[string]any{"kind": "file", "id": "nope"})
	assert.True(t, isErr)
	assert.Contains(t, out, "not found")

	out, isErr = call(t, a2, "log", map[string]any{"category": "decision", "data": `{"why":"tests first"}`})
	require.False(t, isErr, out)
	require.Eventually(t, func() bool {
		out, _ = call(t, a3, "history", map[string]any{"since": "1h", "source": "agent-2", "category": "decision"})
		return strings.Contains(out, `agent-2 decision {"why":"tests first"}`)
	}, 10*time.Second, 20*time.Millisecond, out)
}

func TestTools_BadInput(t *testing.T) {
	cs, _ := newEnv(t).session(t, "agent-1")
	for _, tt := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"send", map[string]any{"to": "a.b", "type": "x"}, "invalid token"},
		{"claim", map[string]any{"kind": "Task", "id": "x"}, `kind "Task"`},
		{"claim", map[string]any{"kind": "task", "id": "x", "ttl": "soon"}, "ttl"},
		{"renew", map[string]any{"kind": "task", "id": "x", "rev": 1, "ttl": "-1s"}, "ttl"},
		{"renew", map[string]any{"kind": "Task", "id": "x", "rev": 1}, "kind"},
		{"release", map[string]any{"kind": "Task", "id": "x", "rev": 1}, "kind"},
		{"release", map[string]any{"kind": "task", "id": "x", "rev": 1, "delete": true}, "not found"},
		{"log", map[string]any{"category": "a.b", "data": "x"}, "invalid token"},
		{"history", map[string]any{"since": "yesterday"}, "not a time"},
		{"state", map[string]any{"kind": "Task"}, "kind"},
		{"state", map[string]any{"kind": "task", "id": strings.Repeat("x", 300)}, "id"},
		{"claim", map[string]any{"kind": "task"}, "id"},
	} {
		out, isErr := call(t, cs, tt.tool, tt.args)
		assert.True(t, isErr, "%s %v: %s", tt.tool, tt.args, out)
		assert.Contains(t, out, tt.want, "%s %v", tt.tool, tt.args)
	}
	_, err := mcpserver.New(mcpserver.Config{Agent: "all"}, nil)
	assert.Error(t, err)
}

// New mail is announced while the session waits: a logging notification
// (after the client sets a level) and the inbox resource updated (after it
// subscribes); the resource lists what is pending.
func TestNotify_NewMail(t *testing.T) {
	e := newEnv(t)
	orch, _ := e.session(t, "orchestrator")
	a2, n := e.session(t, "agent-2")
	n.ch = make(chan string, 100)
	ctx := context.Background()
	require.NoError(t, a2.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}))
	require.NoError(t, a2.Subscribe(ctx, &mcp.SubscribeParams{URI: mcpserver.InboxURI}))
	// The SDK registers a subscription as it answers it; mail sent before
	// that is announced without the resource update, so send until both
	// kinds of notification have come.
	got := map[string]bool{}
	deadline := time.After(20 * time.Second)
	for len(got) < 2 {
		_, isErr := call(t, orch, "send", map[string]any{"to": "agent-2", "type": "task.assign", "data": "go"})
		require.False(t, isErr)
		select {
		case s := <-n.ch:
			got[s] = true
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			t.Fatalf("notifications so far: %v", got)
		}
	}
	assert.True(t, got["log: new mail for agent-2 from orchestrator: task.assign (fetch it with the inbox tool)"], "%v", got)
	assert.True(t, got["updated: "+mcpserver.InboxURI], "%v", got)
	res, err := a2.ReadResource(ctx, &mcp.ReadResourceParams{URI: mcpserver.InboxURI})
	require.NoError(t, err)
	assert.Contains(t, res.Contents[0].Text, "orchestrator -> agent-2 task.assign: go")
	out, _ := call(t, a2, "inbox", nil)
	assert.Contains(t, out, "task.assign: go", "still in the inbox until fetched")
}

// With codi2 gone, a tool call is answered at once with a tool error
// saying so, not after the timeout with an internal subject (a new user's
// input: "state: timed out: codi.state.list.agent: context deadline
// exceeded" after 5 s).
func TestTools_ServerDown(t *testing.T) {
	srv := servertest.Start(t, false)
	e := env{url: srv.Bus().ClientURL()}
	cs, _ := e.session(t, "agent-1")
	out, isErr := call(t, cs, "who", nil)
	require.False(t, isErr, out)
	require.NoError(t, srv.Stop())
	ok := assert.Eventually(t, func() bool {
		out, isErr = call(t, cs, "who", nil)
		return isErr && strings.Contains(out, "codi2 is unreachable at "+e.url+" (reconnecting; try again shortly)")
	}, 10*time.Second, 50*time.Millisecond)
	require.True(t, ok, "last answer: %s", out)
	start := time.Now()
	_, isErr = call(t, cs, "state", map[string]any{"kind": "task"})
	assert.True(t, isErr)
	assert.Less(t, time.Since(start), time.Second, "at once, not after the timeout")
}
