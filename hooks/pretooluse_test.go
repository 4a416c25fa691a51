package hooks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/codi2/codi2/bus"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/gittest"

	"github.com/codi2/codi2/hooks"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gitRepo makes a git repository, with one commit when commit is set, and
// returns its root (symlinks resolved) and project name ("" without a
// commit).
func gitRepo(t *testing.T, commit bool) (string, string) {
	t.Helper()
	if commit {
		return gittest.Repo(t)
	}
	return gittest.Init(t), ""
}

// editInput is a Claude Code PreToolUse input for tool on file, as the
// hooks reference shows it (absolute file_path, the session's cwd).
func editInput(t *testing.T, cwd, tool, file string) string {
	t.Helper()
	ti := map[string]any{"file_path": file, "old_string": "a", "new_string": "b"}
	if tool == "NotebookEdit" {
		ti = map[string]any{"notebook_path": file, "new_source": "x"}
	}
	b, err := json.Marshal(map[string]any{"session_id": "s-3", "transcript_path": "/tmp/t.jsonl", "cwd": cwd,
		"permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": ti, "tool_use_id": "toolu_01"})
	require.NoError(t, err)
	return string(b)
}

func stateClient(t *testing.T, nc *nats.Conn, agent string) *state.Client {
	t.Helper()
	sc, err := state.NewClient(nc, agent)
	require.NoError(t, err)
	return sc
}

func TestClaude_PreToolUse_DeniesReservedByAnother(t *testing.T) {
	url, nc := startServer(t)
	root, project := gitRepo(t, true)
	ctx := context.Background()
	recs, err := stateClient(t, nc, "agent-2").Reserve(ctx, project, []string{"src/**"}, state.ReserveOptions{TTL: time.Hour})
	require.NoError(t, err)
	_, err = stateClient(t, nc, "agent-4").Reserve(ctx, project, []string{"docs/**"}, state.ReserveOptions{TTL: time.Hour, Shared: true})
	require.NoError(t, err)
	exp := recs[0].ExpiresAt.UTC().Format(time.RFC3339)

	want := `{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"deny","permissionDecisionReason":` +
		`"codi2: src/main.go is reserved by agent-2 (pattern src/**) until ` + exp +
		`. Edit something else, or ask agent-2 to release it (codi2 send agent-2 ...)."}}`
	_, raw := hook(t, url, "agent-3", "PreToolUse", editInput(t, root, "Edit", filepath.Join(root, "src", "main.go")))
	assert.Equal(t, want, raw)
	for _, tool := range []string{"Write", "MultiEdit", "NotebookEdit"} {
		o, _ := hook(t, url, "agent-3", "PreToolUse", editInput(t, root, tool, filepath.Join(root, "src", "main.go")))
		require.NotNil(t, o.HookSpecificOutput, tool)
		assert.Equal(t, "deny", o.HookSpecificOutput.PermissionDecision, tool)
	}
	// A path relative to the session's cwd, from a subdirectory.
	sub := filepath.Join(root, "src", "pkg")
	require.NoError(t, os.MkdirAll(sub, 0o755))
	o, _ := hook(t, url, "agent-3", "PreToolUse", editInput(t, sub, "Write", "new.go"))
	require.NotNil(t, o.HookSpecificOutput)
	assert.Contains(t, o.HookSpecificOutput.PermissionDecisionReason, "src/pkg/new.go is reserved by agent-2")

	// A file whose name holds glob characters is checked as that file
	// (it was matched as a glob), whether reserved literally or by a glob.
	page := filepath.Join(root, "app", "[id]", "page.tsx")
	require.NoError(t, os.MkdirAll(filepath.Dir(page), 0o755))
	require.NoError(t, os.WriteFile(page, nil, 0o644))
	_, err = stateClient(t, nc, "agent-2").Reserve(ctx, project, []string{`app/\[id]/page.tsx`}, state.ReserveOptions{TTL: time.Hour})
	require.NoError(t, err)
	o, _ = hook(t, url, "agent-3", "PreToolUse", editInput(t, root, "Edit", page))
	require.NotNil(t, o.HookSpecificOutput)
	assert.Contains(t, o.HookSpecificOutput.PermissionDecisionReason, "app/[id]/page.tsx is reserved by agent-2")

	for name, in := range map[string]string{
		"own reservation":         "", // agent-2 below
		"shared reservation":      editInput(t, root, "Edit", filepath.Join(root, "docs", "a.md")),
		"free file":               editInput(t, root, "Edit", filepath.Join(root, "README.md")),
		"Bash is left alone":      `{"session_id":"s","cwd":"` + root + `","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"rm src/main.go"}}`,
		"file tool without path":  `{"session_id":"s","cwd":"` + root + `","hook_event_name":"PreToolUse","tool_name":"Edit","tool_input":{}}`,
		"another repo's src/main": editInput(t, root, "Edit", filepath.Join(t.TempDir(), "src", "main.go")),
	} {
		agent := "agent-3"
		if in == "" {
			agent, in = "agent-2", editInput(t, root, "Edit", filepath.Join(root, "src", "main.go"))
		}
		o, raw := hook(t, url, agent, "PreToolUse", in)
		assert.Nil(t, o.HookSpecificOutput, "%s: no decision, never allow: %s", name, raw)
	}
}

func TestClaude_PreToolUse_AutoReserve(t *testing.T) {
	url, nc := startServer(t)
	root, project := gitRepo(t, true)
	ctx := context.Background()
	run := func(agent, file string) hooks.Output {
		var out bytes.Buffer
		require.NoError(t, hooks.RunClaude(ctx, "PreToolUse", hooks.Config{Agent: agent, NATSURL: url, Budget: 5 * time.Second, AutoReserve: 15 * time.Minute},
			strings.NewReader(editInput(t, root, "Edit", filepath.Join(root, file))), &out))
		var o hooks.Output
		require.NoError(t, json.Unmarshal(out.Bytes(), &o), out.String())
		return o
	}
	o := run("agent-3", "src/main.go")
	require.NotNil(t, o.HookSpecificOutput)
	assert.Empty(t, o.HookSpecificOutput.PermissionDecision, "reserving is no decision")
	assert.Contains(t, o.HookSpecificOutput.AdditionalContext, "codi2: reserved src/main.go for agent-3 until ")
	sc := stateClient(t, nc, "agent-3")
	held, err := sc.Reservations(ctx, project, "agent-3", "")
	require.NoError(t, err)
	require.Len(t, held, 1)
	assert.Equal(t, "src/main.go", held[0].Pattern)
	assert.False(t, held[0].Shared)
	assert.Equal(t, "agent-3", held[0].Record.BoundTo, "bound to the presence")
	assert.WithinDuration(t, time.Now().Add(15*time.Minute), *held[0].Record.ExpiresAt, time.Minute)

	assert.Contains(t, o.HookSpecificOutput.AdditionalContext, "release it with `codi2 unreserve src/main.go`.",
		"CODI2_AGENT is the shell's too: no --agent")
	o = run("", "src/other.go")
	require.NotNil(t, o.HookSpecificOutput)
	derived := hooks.AgentForSession("s-3")
	assert.Contains(t, o.HookSpecificOutput.AdditionalContext, "release it with `codi2 unreserve --agent "+derived+" src/other.go`.",
		"an id derived from the session is one the model's shell does not have (a new user's input)")

	o = run("agent-3", "src/main.go")
	assert.Nil(t, o.HookSpecificOutput, "the first edit reserves, later ones do not")
	o = run("agent-2", "src/main.go")
	require.NotNil(t, o.HookSpecificOutput)
	assert.Equal(t, "deny", o.HookSpecificOutput.PermissionDecision)
	assert.Contains(t, o.HookSpecificOutput.PermissionDecisionReason, "reserved by agent-3 (pattern src/main.go) until ")
	assert.Contains(t, o.HookSpecificOutput.PermissionDecisionReason, "(auto-reserved on edit)")

	// A file another agent holds shared is edited, not reserved.
	_, err = stateClient(t, nc, "agent-4").Reserve(ctx, project, []string{"docs/**"}, state.ReserveOptions{TTL: time.Hour, Shared: true})
	require.NoError(t, err)
	o = run("agent-3", "docs/a.md")
	assert.Nil(t, o.HookSpecificOutput)
	held, err = sc.Reservations(ctx, project, "agent-3", "docs/a.md")
	require.NoError(t, err)
	assert.Empty(t, held)
}

// PreToolUse fails open: no decision, and the output's systemMessage says
// why, within its budget.
func TestClaude_PreToolUse_FailsOpen(t *testing.T) {
	root, _ := gitRepo(t, true)
	empty, _ := gitRepo(t, false)
	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	for name, tc := range map[string]struct{ cwd, file, project, want string }{
		"server down":          {root, filepath.Join(root, "src", "main.go"), "", "codi2 PreToolUse hook skipped: codi2 unreachable at " + dead},
		"not a repository":     {t.TempDir(), "x.go", "", "not in a repository codi2 manages: x.go is not in a git repository"},
		"no commits":           {empty, "x.go", "", "x.go is in a repository without commits"},
		"no commits, project":  {empty, "x.go", "p-1", "codi2 unreachable"},
		"outside the worktree": {root, "../x.go", "", "x.go is not in a git repository"},
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			var out bytes.Buffer
			require.NoError(t, hooks.RunClaude(context.Background(), "PreToolUse", hooks.Config{Agent: "agent-3", NATSURL: dead, Project: tc.project},
				strings.NewReader(editInput(t, tc.cwd, "Edit", tc.file)), &out))
			assert.Less(t, time.Since(start), 500*time.Millisecond)
			var o hooks.Output
			require.NoError(t, json.Unmarshal(out.Bytes(), &o))
			assert.Nil(t, o.HookSpecificOutput, "no decision")
			assert.Contains(t, o.SystemMessage, tc.want)
		})
	}
}

// SessionStart renews the presence and tells the model what the agent
// holds (reservations in the session's repository, task claims) besides
// its mail.
func TestClaude_SessionStart_HeartbeatAndHoldings(t *testing.T) {
	url, nc := startServer(t)
	root, project := gitRepo(t, true)
	ctx := context.Background()
	sc := stateClient(t, nc, "agent-2")
	recs, err := sc.Reserve(ctx, project, []string{"src/**", "docs/x.md"}, state.ReserveOptions{TTL: time.Hour})
	require.NoError(t, err)
	task, err := sc.Claim(ctx, "task", "T-1", time.Hour, nil)
	require.NoError(t, err)
	_, err = stateClient(t, nc, "agent-3").Claim(ctx, "task", "T-2", time.Hour, nil)
	require.NoError(t, err)
	send(t, nc, "agent-2", "task.assign", "T-3")

	in := `{"session_id":"s-2","transcript_path":"/tmp/t.jsonl","cwd":"` + root + `","hook_event_name":"SessionStart","source":"startup"}`
	var out bytes.Buffer
	require.NoError(t, hooks.RunClaude(ctx, "SessionStart", hooks.Config{Agent: "agent-2", NATSURL: url, Budget: 5 * time.Second, PresenceTTL: 90 * time.Second},
		strings.NewReader(in), &out))
	var o hooks.Output
	require.NoError(t, json.Unmarshal(out.Bytes(), &o), out.String())
	require.NotNil(t, o.HookSpecificOutput, out.String())
	assert.Empty(t, o.SystemMessage)
	until := func(r state.Record) string { return " until " + r.ExpiresAt.UTC().Format(time.RFC3339) }
	ctxText := o.HookSpecificOutput.AdditionalContext
	assert.True(t, strings.HasPrefix(ctxText, "codi2: agent-2 holds reservations docs/x.md"+until(recs[1])+", src/**"+until(recs[0])+
		"; tasks T-1 (rev 1"+until(task)+").\ncodi2 mail for agent-2 (1, now acknowledged):\n"), ctxText)
	assert.NotContains(t, ctxText, "T-2", "another agent's claim")

	pres, err := sc.Get(ctx, state.KindAgent, "agent-2", 0)
	require.NoError(t, err)
	require.NotNil(t, pres.ExpiresAt)
	assert.WithinDuration(t, time.Now().Add(90*time.Second), *pres.ExpiresAt, 30*time.Second)
	var session, worktree string
	require.NoError(t, pres.Field("session", &session))
	require.NoError(t, pres.Field("worktree", &worktree))
	assert.Equal(t, "s-2", session)
	assert.Equal(t, root, worktree)

	// Nothing held, no mail: nothing to say, the presence renewed all the same.
	out.Reset()
	require.NoError(t, hooks.RunClaude(ctx, "SessionStart", hooks.Config{Agent: "agent-5", NATSURL: url, Budget: 5 * time.Second},
		strings.NewReader(in), &out))
	assert.Equal(t, "{}\n", out.String())
	pres, err = stateClient(t, nc, "agent-5").Get(ctx, state.KindAgent, "agent-5", 0)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(hooks.DefaultPresenceTTL), *pres.ExpiresAt, time.Minute)
}

// A session without CODI2_AGENT is told the agent id derived for it.
func TestClaude_SessionStart_NamesDerivedAgent(t *testing.T) {
	url, nc := startServer(t)
	// A broadcast from before the session is not this new agent's mail (a
	// new user's input: every session replayed a week of broadcasts), but
	// one sent after it started is.
	sender, err := bus.NewAgent("agent-2", nc)
	require.NoError(t, err)
	_, err = sender.Send(context.Background(), "all", "standup", []byte("before"))
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, hooks.RunClaude(context.Background(), "SessionStart", hooks.Config{NATSURL: url, Budget: 5 * time.Second},
		strings.NewReader(`{"session_id":"s-7","cwd":"/","hook_event_name":"SessionStart","source":"startup"}`), &out))
	assert.Equal(t, `{"hookSpecificOutput":{"hookEventName":"SessionStart","additionalContext":"codi2: this session is agent `+
		hooks.AgentForSession("s-7")+` (derived from the session id; set CODI2_AGENT to choose one)."}}`+"\n", out.String())
	_, err = sender.Send(context.Background(), "all", "standup", []byte("after"))
	require.NoError(t, err)
	out.Reset()
	require.NoError(t, hooks.RunClaude(context.Background(), "UserPromptSubmit", hooks.Config{NATSURL: url, Budget: 5 * time.Second},
		strings.NewReader(`{"session_id":"s-7","cwd":"/","hook_event_name":"UserPromptSubmit","prompt":"hi"}`), &out))
	assert.Contains(t, out.String(), "after")
	assert.NotContains(t, out.String(), "before")
}

// A server that takes the connection and never answers (hung, or not
// codi2) costs the edit at most the budget: no decision, and why.
func TestClaude_PreToolUse_SilentServer(t *testing.T) {
	root, _ := gitRepo(t, true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	t.Cleanup(func() { _ = ln.Close() }) // runs first: ends the accept loop
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never a byte back
		}
	}()
	start := time.Now()
	var out bytes.Buffer
	require.NoError(t, hooks.RunClaude(context.Background(), "PreToolUse", hooks.Config{Agent: "agent-3", NATSURL: "nats://" + ln.Addr().String()},
		strings.NewReader(editInput(t, root, "Edit", filepath.Join(root, "src", "main.go"))), &out))
	assert.Less(t, time.Since(start), 500*time.Millisecond)
	assert.Equal(t, `{"systemMessage":"codi2 PreToolUse hook skipped: codi2 unreachable at nats://`+ln.Addr().String()+`"}`+"\n", out.String())
}

// SessionEnd signs the agent off: what is bound to its presence is
// released at once instead of when the presence lapses. It never blocks
// and says nothing when there is nothing to end.
func TestClaude_SessionEnd_SignsOff(t *testing.T) {
	url, nc := startServer(t)
	_, project := gitRepo(t, true)
	ctx := context.Background()
	sc := stateClient(t, nc, "agent-2")
	_, err := sc.Heartbeat(ctx, time.Hour, nil)
	require.NoError(t, err)
	_, err = sc.Reserve(ctx, project, []string{"src/**"}, state.ReserveOptions{TTL: time.Hour, Bind: true})
	require.NoError(t, err)

	in := `{"session_id":"s","hook_event_name":"SessionEnd","reason":"exit"}`
	_, raw := hook(t, url, "agent-2", "SessionEnd", in)
	assert.Equal(t, "{}", raw)
	held, err := sc.Reservations(ctx, project, "", "")
	require.NoError(t, err)
	assert.Empty(t, held, "released with the presence")
	_, raw = hook(t, url, "agent-2", "SessionEnd", in)
	assert.Equal(t, "{}", raw, "no presence left: nothing to say")
}

// An event name codi2 does not know (a typo in the settings: names are
// case sensitive) is said in systemMessage instead of silently guarding
// nothing; Claude Code's other events get no decision and no message.
func TestClaude_UnknownEvent(t *testing.T) {
	url, _ := startServer(t)
	in := `{"session_id":"s","hook_event_name":"PreToolUse","tool_name":"Edit","tool_input":{"file_path":"/tmp/x"}}`
	o, _ := hook(t, url, "agent-2", "pretooluse", in)
	assert.Contains(t, o.SystemMessage, `"pretooluse" is not a Claude Code hook event codi2 knows (SessionStart, UserPromptSubmit, PreToolUse`)
	_, raw := hook(t, url, "agent-2", "Notification", `{"session_id":"s","hook_event_name":"Notification"}`)
	assert.Equal(t, "{}", raw)
}
