package test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/gittest"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// projectRepo makes a git repository with one commit and returns its root and
// project name.
func projectRepo(t testing.TB) (string, string) { return gittest.Repo(t) }

// gitIn runs git in dir with env added and returns its combined output.
func gitIn(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	out, err := gittest.Try(dir, env, args...)
	require.NoError(t, err, "git %v: %s", args, out)
	return out
}

func gitTry(dir string, env []string, args ...string) (string, error) {
	return gittest.Try(dir, env, args...)
}

// hookIn pipes a hook input into the built binary with env added, as
// Claude Code runs it, and returns stdout; the exit code must be 0.
func hookIn(t *testing.T, bin string, env []string, event, input string) string {
	t.Helper()
	cmd := exec.Command(bin, "hook", "claude", event)
	cmd.Env = append(cmd.Environ(), env...)
	cmd.Stdin = strings.NewReader(input)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "hook %s: %s", event, stderr.String())
	return string(out)
}

// claudeInput is a hook input as Claude Code's hooks reference shows it.
func claudeInput(t testing.TB, session, cwd, event string, extra map[string]any) string {
	t.Helper()
	in := map[string]any{"session_id": session, "transcript_path": "/tmp/" + session + ".jsonl", "cwd": cwd,
		"permission_mode": "default", "hook_event_name": event}
	for k, v := range extra {
		in[k] = v
	}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	return string(b)
}

func editOf(file string) map[string]any {
	return map[string]any{"tool_name": "Edit", "tool_use_id": "toolu_01",
		"tool_input": map[string]any{"file_path": file, "old_string": "a", "new_string": "b"}}
}

// Two Claude Code sessions on one repository, hook inputs in sequence:
// agent-2 reserves src/**, agent-3's Edit of src/main.go is denied (and so
// is its commit of it, by the git hook), agent-2's presence lapses, and
// agent-3's next Edit (and commit) goes through.
func TestHooks_Scenario_ReservationEnforcedUntilPresenceLapses(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	root, project := projectRepo(t)
	// A budget past the machine's load: this test is about what the hooks
	// decide, not how fast (a SessionStart past the default 300 ms on a
	// loaded CI machine failed open, and the output differed).
	env2 := []string{"CODI2_NATS_URL=" + srv.URL, "CODI2_AGENT=agent-2", "CODI2_BUDGET=10s"}
	env3 := []string{"CODI2_NATS_URL=" + srv.URL, "CODI2_AGENT=agent-3", "CODI2_BUDGET=10s"}
	main := filepath.Join(root, "src", "main.go")
	require.NoError(t, os.MkdirAll(filepath.Dir(main), 0o755))
	require.NoError(t, os.WriteFile(main, []byte("package main\n"), 0o644))
	out, err := exec.Command(bin, "hooks", "install", "--git", "--dir", root, "--bin", bin).CombinedOutput()
	require.NoError(t, err, "%s", out)

	// Session 1, agent-2: starts (heartbeat), reserves src/** bound to its presence.
	assert.Equal(t, "{}\n", hookIn(t, bin, env2, "SessionStart", claudeInput(t, "s-2", root, "SessionStart", map[string]any{"source": "startup"})))
	a2, err := state.NewClient(connect(t, srv.URL, "agent-2"), "agent-2")
	require.NoError(t, err)
	recs, err := a2.Reserve(context.Background(), project, []string{"src/**"}, state.ReserveOptions{TTL: time.Hour, Bind: true})
	require.NoError(t, err)

	// Session 2, agent-3: starts, its Edit of src/main.go is denied.
	assert.Equal(t, "{}\n", hookIn(t, bin, env3, "SessionStart", claudeInput(t, "s-3", root, "SessionStart", map[string]any{"source": "startup"})))
	denied := `{"hookSpecificOutput":{"hookEventName":"PreToolUse","permissionDecision":"deny","permissionDecisionReason":` +
		`"codi2: src/main.go is reserved by agent-2 (pattern src/**) until ` + recs[0].ExpiresAt.UTC().Format(time.RFC3339) +
		`. Edit something else, or ask agent-2 to release it (codi2 send agent-2 ...)."}}` + "\n"
	edit := claudeInput(t, "s-3", root, "PreToolUse", editOf(main))
	assert.Equal(t, denied, hookIn(t, bin, env3, "PreToolUse", edit))
	// Its commit of the file is refused by the git hook too.
	require.NoError(t, os.WriteFile(main, []byte("package main // agent-3\n"), 0o644))
	gitIn(t, root, nil, "add", "src/main.go")
	out2, err := gitTry(root, env3, "commit", "-q", "-m", "agent-3 edits main")
	require.Error(t, err, "commit refused: %s", out2)
	assert.Contains(t, out2, "src/main.go is reserved by agent-2 (pattern src/**) until ")

	// agent-2's next hook gives it a short presence, and then it goes quiet.
	hookIn(t, bin, append(env2, "CODI2_PRESENCE_TTL=1s"), "UserPromptSubmit", claudeInput(t, "s-2", root, "UserPromptSubmit", map[string]any{"prompt": "brb"}))
	require.Eventually(t, func() bool {
		return hookIn(t, bin, env3, "PreToolUse", edit) == "{}\n"
	}, 30*time.Second, 100*time.Millisecond, "agent-3's edit goes through once agent-2's presence lapsed")
	held, err := a2.Reservations(context.Background(), project, "", "")
	require.NoError(t, err)
	assert.Empty(t, held, "released with the presence")
	gitIn(t, root, env3, "commit", "-q", "-m", "agent-3 edits main")

	out, err = exec.Command(bin, "hooks", "uninstall", "--git", "--dir", root, "--bin", bin).CombinedOutput()
	require.NoError(t, err, "%s", out)
	_, err = os.Stat(filepath.Join(root, ".git", "hooks", "pre-commit"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// With the server stopped, PreToolUse in a managed repository answers fast
// with no decision, and a commit goes through with a warning.
func TestHooks_Binary_PreToolUseAndCommitFailOpen(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs codi2")
	}
	bin := proctest.Build(t)
	root, _ := projectRepo(t)
	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	env := []string{"CODI2_NATS_URL=" + dead, "CODI2_AGENT=agent-3"}
	start := time.Now()
	out := hookIn(t, bin, env, "PreToolUse", claudeInput(t, "s-3", root, "PreToolUse", editOf(filepath.Join(root, "src", "main.go"))))
	assert.Less(t, time.Since(start), 500*time.Millisecond)
	assert.Equal(t, `{"systemMessage":"codi2 PreToolUse hook skipped: codi2 unreachable at `+dead+`"}`+"\n", out)

	o, err := exec.Command(bin, "hooks", "install", "--git", "--dir", root, "--bin", bin).CombinedOutput()
	require.NoError(t, err, "%s", o)
	require.NoError(t, os.WriteFile(filepath.Join(root, "a.go"), []byte("x"), 0o644))
	gitIn(t, root, nil, "add", "a.go")
	out = gitIn(t, root, env, "commit", "-q", "-m", "a")
	assert.Contains(t, out, "codi2: pre-commit reservation check skipped: codi2 unreachable at "+dead)
}

// PostToolUse records the file.write audit event and hands a mail summary
// back; Stop blocks once for urgent mail: recorded hook inputs through the
// built binary.
func TestHooks_Binary_FileWriteMailAndStop(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	root, project := projectRepo(t)
	env := []string{"CODI2_NATS_URL=" + srv.URL, "CODI2_AGENT=agent-3"}
	nc := connect(t, srv.URL, "orchestrator")
	orch, err := bus.NewAgent("orchestrator", nc)
	require.NoError(t, err)
	_, err = orch.Send(context.Background(), "agent-3", "review", []byte("look at main.go"))
	require.NoError(t, err)

	post := claudeInput(t, "s-3", root, "PostToolUse", map[string]any{"tool_name": "Write", "tool_use_id": "toolu_02",
		"tool_input":    map[string]any{"file_path": filepath.Join(root, "src", "main.go"), "content": "package main\n"},
		"tool_response": map[string]any{"filePath": filepath.Join(root, "src", "main.go"), "success": true}})
	assert.Equal(t, `{"hookSpecificOutput":{"hookEventName":"PostToolUse","additionalContext":`+
		`"codi2: 1 new message(s) for agent-3 from orchestrator; read them with `+"`codi2 inbox`"+` or the inbox tool."}}`+"\n",
		hookIn(t, bin, env, "PostToolUse", post))
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	defer ac.Close()
	var recs []audit.Record
	require.Eventually(t, func() bool {
		res, err := ac.Query(context.Background(), audit.Query{Source: "agent-3", Category: "file"})
		recs = res.Records
		return err == nil && len(recs) == 1
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, "codi.audit.log.agent-3.file.write", recs[0].Subject)
	assert.JSONEq(t, `{"path":"src/main.go","tool":"Write","agent":"agent-3","session":"s-3","project":"`+project+`"}`, string(recs[0].Data))

	stop := claudeInput(t, "s-3", root, "Stop", map[string]any{"stop_hook_active": false})
	assert.Equal(t, "{}\n", hookIn(t, bin, env, "Stop", stop), "no urgent mail")
	_, err = orch.Send(context.Background(), "agent-3", "incident", []byte("prod is down"), bus.WithHeader(cli.HeaderImportance, "urgent"))
	require.NoError(t, err)
	assert.Equal(t, "{}\n", hookIn(t, bin, env, "Stop", claudeInput(t, "s-3", root, "Stop", map[string]any{"stop_hook_active": true})),
		"never when a stop hook already continued the session")
	out := hookIn(t, bin, env, "Stop", stop)
	var o struct{ Decision, Reason string }
	require.NoError(t, json.Unmarshal([]byte(out), &o), out)
	assert.Equal(t, "block", o.Decision)
	assert.Contains(t, o.Reason, "orchestrator -> agent-3 incident [urgent]: prod is down")
	assert.Equal(t, "{}\n", hookIn(t, bin, env, "Stop", stop), "blocks once")
}
