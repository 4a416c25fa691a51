package hooks_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/filewatch"
	"github.com/codi2/codi2/hooks"
	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/internal/servertest"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func startServer(t *testing.T) (string, *nats.Conn) {
	t.Helper()
	s := servertest.Start(t, false)
	nc, err := nats.Connect(s.Bus().ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return s.Bus().ClientURL(), nc
}

// hook runs one hook event with input (a Claude Code hook payload) and
// returns the decoded output and the raw line.
func hook(t *testing.T, url, agent, event, input string) (hooks.Output, string) {
	t.Helper()
	var out bytes.Buffer
	err := hooks.RunClaude(context.Background(), event, hooks.Config{Agent: agent, NATSURL: url, Budget: 5 * time.Second},
		strings.NewReader(input), &out)
	require.NoError(t, err)
	var o hooks.Output
	require.NoError(t, json.Unmarshal(out.Bytes(), &o), out.String())
	return o, strings.TrimSpace(out.String())
}

func send(t *testing.T, nc *nats.Conn, to, typ, data string, opts ...bus.SendOption) {
	t.Helper()
	a, err := bus.NewAgent("orchestrator", nc)
	require.NoError(t, err)
	_, err = a.Send(context.Background(), to, typ, []byte(data), opts...)
	require.NoError(t, err)
}

const sessionStart = `{"session_id":"s-1","transcript_path":"/tmp/t.jsonl","cwd":"/tmp","hook_event_name":"SessionStart","source":"startup"}`

func TestClaude_MailAsContext(t *testing.T) {
	url, nc := startServer(t)
	send(t, nc, "agent-2", "task.assign", `{"task":"ADR-028"}`)
	o, _ := hook(t, url, "agent-2", "SessionStart", sessionStart)
	require.NotNil(t, o.HookSpecificOutput)
	assert.Equal(t, "SessionStart", o.HookSpecificOutput.HookEventName)
	assert.Contains(t, o.HookSpecificOutput.AdditionalContext, "codi2 mail for agent-2 (1, now acknowledged):")
	assert.Contains(t, o.HookSpecificOutput.AdditionalContext, `orchestrator -> agent-2 task.assign: {"task":"ADR-028"}`)
	assert.Empty(t, o.HookSpecificOutput.PermissionDecision)

	_, raw := hook(t, url, "agent-2", "UserPromptSubmit", `{"session_id":"s-1","hook_event_name":"UserPromptSubmit","prompt":"go on"}`)
	assert.Equal(t, "{}", raw, "delivered once: nothing more to say")
	send(t, nc, "agent-2", "question", "are you done?")
	o, _ = hook(t, url, "agent-2", "UserPromptSubmit", `{"session_id":"s-1","hook_event_name":"UserPromptSubmit","prompt":"go on"}`)
	assert.Contains(t, o.HookSpecificOutput.AdditionalContext, "question: are you done?")
}

func TestClaude_PostToolUse_RecordsWriteAndSummarizesMail(t *testing.T) {
	url, nc := startServer(t)
	dir := t.TempDir()
	for _, args := range [][]string{{"init", "-q"}, {"commit", "-q", "--allow-empty", "-m", "first"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	file := filepath.Join(dir, "src", "main.go")
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o755))
	require.NoError(t, os.WriteFile(file, []byte("package b"), 0o644))
	// codi2 watch --files records the same edit: same path, same hash.
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	defer ac.Close()
	w, err := filewatch.New(filewatch.Config{Root: dir, Agent: "agent-2", Settle: 150 * time.Millisecond},
		filewatch.AuditSink(ac, false), bustest.Logger(t))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx, time.Second) }()
	defer func() { cancel(); require.NoError(t, <-ran) }()
	<-w.Ready()
	require.NoError(t, os.WriteFile(file, []byte("package main"), 0o644))

	input, _ := json.Marshal(map[string]any{"session_id": "s-9", "cwd": dir, "hook_event_name": "PostToolUse", "tool_name": "Edit",
		"tool_input": map[string]any{"file_path": file, "old_string": "a", "new_string": "b"}, "tool_response": map[string]any{"success": true}})
	_, raw := hook(t, url, "agent-2", "PostToolUse", string(input))
	assert.Equal(t, "{}", raw, "no mail: nothing for the model")

	var recs []audit.Record
	require.Eventually(t, func() bool {
		res, err := ac.Query(context.Background(), audit.Query{Source: "agent-2", Category: "file"})
		recs = res.Records
		return err == nil && len(recs) == 2
	}, 10*time.Second, 20*time.Millisecond)
	var fw hooks.FileWrite
	var change filewatch.Change
	for _, rec := range recs {
		assert.Equal(t, "codi.audit.log.agent-2.file.write", rec.Subject)
		if strings.Contains(string(rec.Data), `"tool"`) {
			require.NoError(t, json.Unmarshal(rec.Data, &fw))
		} else {
			require.NoError(t, json.Unmarshal(rec.Data, &change))
		}
	}
	sum := sha256.Sum256([]byte("package main"))
	assert.Equal(t, hex.EncodeToString(sum[:]), fw.SHA256)
	require.NotNil(t, fw.Size)
	assert.EqualValues(t, 12, *fw.Size)
	assert.Equal(t, fw.SHA256, change.SHA256, "the hook's and the watcher's event of one edit carry one hash")
	assert.Equal(t, fw.Path, change.Path)
	assert.Equal(t, "src/main.go", fw.Path, "relative to the repository root")
	assert.Equal(t, "Edit", fw.Tool)
	assert.Equal(t, "s-9", fw.Session)
	assert.Regexp(t, `^git-[0-9a-f]{12}$`, fw.Project)

	send(t, nc, "agent-2", "a", "1")
	send(t, nc, "agent-2", "b", "2")
	o, _ := hook(t, url, "agent-2", "PostToolUse", `{"session_id":"s-9","hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{"command":"ls"}}`)
	assert.Equal(t, "codi2: 2 new message(s) for agent-2 from orchestrator; read them with `codi2 inbox` or the inbox tool.",
		o.HookSpecificOutput.AdditionalContext)
	o, _ = hook(t, url, "agent-2", "UserPromptSubmit", `{"session_id":"s-9","hook_event_name":"UserPromptSubmit"}`)
	assert.Contains(t, o.HookSpecificOutput.AdditionalContext, "(2, now acknowledged)", "the summary did not take the mail")
}

func TestClaude_Stop_UrgentMailBlocksOnce(t *testing.T) {
	url, nc := startServer(t)
	stop := `{"session_id":"s-1","hook_event_name":"Stop","stop_hook_active":false}`
	_, raw := hook(t, url, "agent-2", "Stop", stop)
	assert.Equal(t, "{}", raw)
	send(t, nc, "agent-2", "fyi", "no rush")
	_, raw = hook(t, url, "agent-2", "Stop", stop)
	assert.Equal(t, "{}", raw, "only urgent mail blocks a stop")
	send(t, nc, "agent-2", "task.assign", "fix prod", bus.WithHeader(cli.HeaderImportance, "urgent"))
	_, raw = hook(t, url, "agent-2", "Stop", `{"session_id":"s-1","hook_event_name":"Stop","stop_hook_active":true}`)
	assert.Equal(t, "{}", raw, "never when a stop hook already continued")
	o, _ := hook(t, url, "agent-2", "Stop", stop)
	assert.Equal(t, "block", o.Decision)
	assert.Contains(t, o.Reason, "fix prod")
	assert.Contains(t, o.Reason, "no rush", "earlier mail comes with it, in order")
	_, raw = hook(t, url, "agent-2", "Stop", stop)
	assert.Equal(t, "{}", raw, "blocks once: the mail was handed over")
}

func TestClaude_FailsOpen(t *testing.T) {
	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	for _, ev := range []string{"SessionStart", "UserPromptSubmit", "PostToolUse", "Stop"} {
		start := time.Now()
		var out bytes.Buffer
		err := hooks.RunClaude(context.Background(), ev, hooks.Config{Agent: "agent-2", NATSURL: dead}, strings.NewReader(sessionStart), &out)
		require.NoError(t, err)
		assert.Less(t, time.Since(start), 500*time.Millisecond, ev)
		var o hooks.Output
		require.NoError(t, json.Unmarshal(out.Bytes(), &o))
		assert.Contains(t, o.SystemMessage, "codi2 "+ev+" hook skipped: codi2 unreachable", ev)
		assert.Nil(t, o.HookSpecificOutput, "no decision, no context")
		assert.Empty(t, o.Decision)
	}
	var out bytes.Buffer
	require.NoError(t, hooks.RunClaude(context.Background(), "PreToolUse", hooks.Config{NATSURL: dead},
		strings.NewReader(`{"session_id":"s","hook_event_name":"PreToolUse","tool_name":"Edit","tool_input":{"file_path":"/x"}}`), &out))
	assert.Contains(t, out.String(), `{"systemMessage":"codi2 PreToolUse hook skipped: hooks: not in a repository codi2 manages: /x is not in a git repository"}`,
		"PreToolUse makes no decision: never allow")
	out.Reset()
	require.NoError(t, hooks.RunClaude(context.Background(), "Notification", hooks.Config{NATSURL: dead}, strings.NewReader(`{}`), &out))
	assert.Equal(t, "{}\n", out.String())
	out.Reset()
	require.NoError(t, hooks.RunClaude(context.Background(), "Stop", hooks.Config{}, strings.NewReader(`not json`), &out))
	assert.Contains(t, out.String(), "its input is not Claude Code's hook JSON", "fails open on bad input too")
	out.Reset()
	require.NoError(t, hooks.RunClaude(context.Background(), "Stop", hooks.Config{Agent: "a.b", NATSURL: dead}, strings.NewReader(`{}`), &out))
	assert.Contains(t, out.String(), `agent id \"a.b\"`)
}

func TestAgentForSession(t *testing.T) {
	a := hooks.AgentForSession("0b6b0f0e-1111")
	assert.Regexp(t, `^claude-[0-9a-f]{8}$`, a)
	assert.Equal(t, a, hooks.AgentForSession("0b6b0f0e-1111"))
	assert.NotEqual(t, a, hooks.AgentForSession("other"))
}

// With auth on, credentials of another agent are refused by the server at
// once, and missing ones at connect: the hook says so and fails open well
// within its budget, not after it.
func TestClaude_AuthRefusals(t *testing.T) {
	s := servertest.Start(t, true)
	file := servertest.Creds(t, s, "agent-1", auth.RoleAgent)
	url := s.Bus().ClientURL()

	var out bytes.Buffer
	start := time.Now()
	require.NoError(t, hooks.RunClaude(context.Background(), "SessionStart",
		hooks.Config{Agent: "agent-2", NATSURL: url, Creds: file, Budget: 5 * time.Second}, strings.NewReader(sessionStart), &out))
	assert.Less(t, time.Since(start), 4*time.Second, "refused at once, not after the budget")
	assert.Contains(t, out.String(), "codi2 refused agent-2")
	assert.Contains(t, out.String(), "CODI2_CREDS")

	out.Reset()
	require.NoError(t, hooks.RunClaude(context.Background(), "SessionStart", hooks.Config{Agent: "agent-1", NATSURL: url},
		strings.NewReader(sessionStart), &out))
	assert.Contains(t, out.String(), "refused the credentials")
}
