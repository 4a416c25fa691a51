package test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/latency"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runHook pipes a Claude Code hook input into the built binary, as Claude
// Code does, and returns stdout and the exit code.
func runHook(t testing.TB, bin, url, agent, event, input string) (string, int) {
	cmd := exec.Command(bin, "hook", "claude", event)
	cmd.Env = append(cmd.Environ(), "CODI2_NATS_URL="+url, "CODI2_AGENT="+agent)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestHooks_Binary_MailAndFailOpen(t *testing.T) {
	srv := startCodi2(t)
	bin := proctest.Build(t)
	orch, err := bus.NewAgent("orchestrator", connect(t, srv.URL, "orchestrator"))
	require.NoError(t, err)
	_, err = orch.Send(context.Background(), "agent-2", "task.assign", []byte(`{"task":"ADR-028"}`))
	require.NoError(t, err)

	out, code := runHook(t, bin, srv.URL, "agent-2", "SessionStart",
		`{"session_id":"s-1","transcript_path":"/tmp/t.jsonl","cwd":"/tmp","hook_event_name":"SessionStart","source":"startup"}`)
	require.Equal(t, 0, code)
	var o struct {
		HookSpecificOutput struct {
			HookEventName     string `json:"hookEventName"`
			AdditionalContext string `json:"additionalContext"`
		} `json:"hookSpecificOutput"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &o), out)
	assert.Equal(t, "SessionStart", o.HookSpecificOutput.HookEventName)
	assert.Contains(t, o.HookSpecificOutput.AdditionalContext, `task.assign: {"task":"ADR-028"}`)

	out, code = runHook(t, bin, srv.URL, "agent-2", "PreToolUse",
		`{"session_id":"s-1","cwd":"/tmp","hook_event_name":"PreToolUse","tool_name":"Edit","tool_input":{"file_path":"/tmp/x.go","old_string":"a","new_string":"b"}}`)
	assert.Equal(t, 0, code)
	assert.Equal(t, `{"systemMessage":"codi2 PreToolUse hook skipped: hooks: not in a repository codi2 manages: /tmp/x.go is not in a git repository"}`+"\n", out,
		"no permission decision, never allow")

	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	start := time.Now()
	out, code = runHook(t, bin, dead, "agent-2", "UserPromptSubmit", `{"session_id":"s-1","hook_event_name":"UserPromptSubmit","prompt":"hi"}`)
	assert.Less(t, time.Since(start), 500*time.Millisecond, "fails open fast")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, `"systemMessage":"codi2 UserPromptSubmit hook skipped: codi2 unreachable`)
}

// BenchmarkHook_Process measures `codi2 hook claude EVENT` from process
// start to exit, as Claude Code pays it before every edit (PreToolUse) and
// after it (PostToolUse), against a running server:
//
//	go test -run XXX -bench Hook_Process -benchtime 100x ./test
func BenchmarkHook_Process(b *testing.B) {
	if testing.Short() {
		b.Skip("builds and runs codi2")
	}
	srv := proctest.Start(b, proctest.Build(b), b.TempDir(), 0)
	bin := proctest.Build(b)
	// The reservation check in a real repository: a free file (list the
	// reservations covering it) and one agent-2 holds (deny).
	root, project := projectRepo(b)
	nc, err := nats.Connect(srv.URL)
	require.NoError(b, err)
	defer nc.Close()
	a2, err := state.NewClient(nc, "agent-2")
	require.NoError(b, err)
	_, err = a2.Reserve(context.Background(), project, []string{"src/**"}, state.ReserveOptions{TTL: time.Hour})
	require.NoError(b, err)
	for _, ev := range []struct{ name, event, input string }{
		{"PreToolUse", "PreToolUse", claudeInput(b, "s", root, "PreToolUse", editOf(filepath.Join(root, "README.md")))},
		{"PreToolUse-deny", "PreToolUse", claudeInput(b, "s", root, "PreToolUse", editOf(filepath.Join(root, "src", "main.go")))},
		{"UserPromptSubmit", "UserPromptSubmit", `{"session_id":"s","hook_event_name":"UserPromptSubmit","prompt":"hi"}`},
	} {
		b.Run(ev.name, func(b *testing.B) {
			rec := latency.NewRecorder(b.N)
			for range b.N {
				start := time.Now()
				if _, code := runHook(b, bin, srv.URL, "agent-3", ev.event, ev.input); code != 0 {
					b.Fatalf("exit %d", code)
				}
				rec.Record(time.Since(start))
			}
			s := rec.Summary()
			b.ReportMetric(float64(s.P50.Microseconds()), "p50-us")
			b.ReportMetric(float64(s.P99.Microseconds()), "p99-us")
		})
	}
}
