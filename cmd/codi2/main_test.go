package main

import (
	"context"
	"encoding/json"
	"github.com/codi2/codi2/cli"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRun_Commands(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no args", nil, 2, "", "Usage:"},
		{"version", []string{"version"}, 0, "codi2 ", ""},
		{"help", []string{"help"}, 0, "Usage:", ""},
		{"unknown", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"flags before a verb", []string{"--json", "--nats-url", "nats://127.0.0.1:1", "--timeout", "1s", "status"}, 5, "", "cannot reach"},
		{"help verb", []string{"help", "claim"}, 0, "Claim KIND/ID", ""},
		{"help admin command", []string{"help", "serve"}, 0, "", "-nats-listen"},
		{"help agent", []string{"help", "agent"}, 0, "codi2 agent add", ""},
		{"agent help", []string{"agent", "-h"}, 0, "codi2 agent add", ""},
		{"hooks help", []string{"hooks", "--help"}, 0, "usage: codi2 hooks install|uninstall", ""},
		{"help unknown", []string{"help", "nope"}, 2, "", `unknown command "nope"`}, // a new user's input: it printed the overview, exit 0
		{"mcp without agent", []string{"mcp"}, 1, "", "no agent id: set CODI2_AGENT in the environment Claude Code starts with"},
		{"hook help", []string{"hook", "claude", "-h"}, 0, "", "usage: codi2 hook claude EVENT [flags] (EVENT: SessionStart,"},
		{"hook help short", []string{"hook", "-h"}, 0, "", "codi2 hook git-pre-commit"},
		{"serve help", []string{"serve", "-h"}, 0, "", "-nats-listen"},
		// A backquoted word in a flag's usage is its argument's name to
		// the flag package: "-creds codi2 agent add" before.
		{"creds usage", []string{"audit", "export", "-h"}, 0, "", "-creds FILE\n"},
		{"auth usage", []string{"serve", "-h"}, 0, "", "  -auth\n"},
		{"bad flag", []string{"serve", "--no-such-flag"}, 2, "", "flag provided but not defined"},
		{"extra args", []string{"serve", "now"}, 2, "", "unexpected arguments: now"},
		{"bad store", []string{"serve", "--store", "mysql"}, 2, "", `--store "mysql": want bolt, pebble or fdb`},
		{"bad http", []string{"serve", "--http-listen", "nope"}, 2, "", "--http-listen"},
		{"bad level", []string{"serve", "--log-level", "loud"}, 2, "", "--log-level"},
		{"bad format", []string{"serve", "--log-format", "xml"}, 2, "", "--log-format"},
		{"bad nats listen", []string{"serve", "--data", "DIR", "--nats-listen", "127.0.0.1:x", "--http-listen", "127.0.0.1:0"}, 1, "", "listen"},
		{"bad size", []string{"serve", "--msg-max-bytes", "lots"}, 2, "", `invalid value "lots" for flag -msg-max-bytes`},
		{"bad lag", []string{"serve", "--ready-max-lag", "0s"}, 2, "", "--ready-max-lag 0s: want a positive duration"},
		// Bad usage of the admin commands is exit 2, as for the verbs
		// (exit 1 before); a failure of what they do stays 1.
		// A hook's exit 2 is a block to Claude Code (its hooks
		// reference, "Exit code 2"): a hook's bad usage stays 1.
		{"hook bad flag", []string{"hook", "claude", "PreToolUse", "--nope"}, 1, "", "flag provided but not defined: -nope"},
		{"hook no event", []string{"hook", "claude"}, 1, "", "usage: codi2 hook claude EVENT"},
		{"git hook bad flag", []string{"hook", "git-pre-commit", "--nope"}, 1, "", "flag provided but not defined: -nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, a := range tt.args {
				if a == "DIR" {
					tt.args[i] = t.TempDir()
				}
			}
			var stdout, stderr proctest.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			assert.Equal(t, tt.wantCode, code, "stderr: %s", stderr.String())
			assert.Contains(t, stdout.String(), tt.wantStdout)
			assert.Contains(t, stderr.String(), tt.wantStderr)
		})
	}
}

// codi2 help lists every agent verb, and each has its own help.
func TestRun_HelpListsEveryVerb(t *testing.T) {
	var help proctest.Buffer
	require.Equal(t, 0, run(context.Background(), []string{"help"}, &help, &proctest.Buffer{}))
	for _, verb := range cli.Verbs {
		assert.Contains(t, help.String(), "\n  "+verb+" ", verb)
		var out proctest.Buffer
		assert.Equal(t, 0, run(context.Background(), []string{verb, "-h"}, &out, &proctest.Buffer{}), verb)
		assert.Contains(t, out.String(), "codi2 "+verb, verb)
	}
}

func TestRun_ServeEnvError(t *testing.T) {
	t.Setenv("CODI2_NATS_SYNC_ALWAYS", "maybe")
	var stderr proctest.Buffer
	assert.Equal(t, 2, run(context.Background(), []string{"serve"}, &proctest.Buffer{}, &stderr))
	assert.Contains(t, stderr.String(), "CODI2_NATS_SYNC_ALWAYS")
}

func TestRun_ServePortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var stderr proctest.Buffer
	natsDir := t.TempDir()
	code := run(context.Background(), []string{"serve", "--data", natsDir, "--nats-listen", ln.Addr().String(), "--http-listen", "127.0.0.1:0"}, &proctest.Buffer{}, &stderr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "address already in use")
	entries, err := os.ReadDir(natsDir)
	require.NoError(t, err)
	assert.Empty(t, entries, "the NATS address is checked before the data directory is touched")

	// The HTTP address is checked before anything starts: nothing was
	// written to the data directory.
	dir := t.TempDir()
	code = run(context.Background(), []string{"serve", "--data", dir, "--nats-listen", "127.0.0.1:-1", "--http-listen", ln.Addr().String()}, &proctest.Buffer{}, &stderr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "http listen")
	entries, err = os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "NATS and the stores did not start")
}

func TestRun_ServeUnwritableData(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	var stderr proctest.Buffer
	code := run(context.Background(), []string{"serve", "--data", filepath.Join(file, "data"), "--nats-listen", "127.0.0.1:-1", "--http-listen", "127.0.0.1:0"}, &proctest.Buffer{}, &stderr)
	assert.Equal(t, 1, code)
	assert.Contains(t, stderr.String(), "data directory")
}

// readyLine waits for the "codi2 ready" log line and returns its fields.
func readyLine(t *testing.T, logs *proctest.Buffer, done <-chan int) map[string]any {
	t.Helper()
	var ready map[string]any
	require.Eventually(t, func() bool {
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d: %s", code, logs.String())
		default:
		}
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, `"codi2 ready"`) {
				require.NoError(t, json.Unmarshal([]byte(line), &ready))
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond)
	return ready
}

func TestRun_ServeAndShutdown(t *testing.T) {
	dir := t.TempDir()
	// The data directory comes from the environment, the rest from flags.
	t.Setenv("CODI2_DATA", dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs proctest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--nats-listen", "127.0.0.1:-1", "--http-listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:-1", "--log-format", "json"}, &proctest.Buffer{}, &logs)
	}()
	ready := readyLine(t, &logs, done)
	assert.Equal(t, dir, ready["data"])
	assert.Equal(t, "bolt", ready["store"])
	assert.Equal(t, true, ready["embedded"])
	assert.Contains(t, logs.String(), "NATS is open", "loopback without --auth says it is open")

	resp, err := http.Get(ready["http"].(string) + "/healthz")
	require.NoError(t, err)
	var health map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&health))
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok", health["status"])

	resp, err = http.Get(ready["http"].(string) + "/readyz")
	require.NoError(t, err)
	var readiness map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&readiness))
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, readiness)
	assert.Equal(t, []any{}, readiness["problems"], "ready: an empty list, not null")
	assert.Equal(t, true, readiness["ready"])
	assert.Equal(t, "running", readiness["phase"])

	// The API, the dashboard and the metrics behind the same listener,
	// each request in the access log.
	for _, path := range []string{"/v1/status", "/", "/metrics", "/v1/openapi.json"} {
		resp, err := http.Get(ready["http"].(string) + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
	assert.Contains(t, logs.String(), `"path":"/v1/status"`)
	assert.Contains(t, logs.String(), `"message":"http request"`)

	// NATS over WebSocket.
	wsURL, _ := ready["websocket"].(string)
	require.True(t, strings.HasPrefix(wsURL, "ws://127.0.0.1:"), wsURL)
	wnc, err := nats.Connect(wsURL)
	require.NoError(t, err)
	require.NoError(t, wnc.Flush())
	wnc.Close()

	nc, err := nats.Connect(ready["nats"].(string))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	var names []string
	for name := range js.StreamNames(ctx).Name() {
		names = append(names, name)
	}
	assert.ElementsMatch(t, []string{"CODI_MSG", "CODI_STATE", "CODI_AUDIT"}, names)
	assert.FileExists(t, filepath.Join(dir, "state.db"))
	assert.FileExists(t, filepath.Join(dir, "audit.db"))
	assert.DirExists(t, filepath.Join(dir, "jetstream"))

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	assert.Contains(t, logs.String(), `"codi2 stopped"`)
}

func TestNewLogger(t *testing.T) {
	var buf proctest.Buffer
	log, err := newLogger(&buf, "warn", "console")
	require.NoError(t, err)
	log.Info().Msg("hidden")
	log.Warn().Msg("shown")
	assert.NotContains(t, buf.String(), "hidden")
	assert.Contains(t, buf.String(), "shown")
	assert.False(t, isTerminal(&buf))
	assert.False(t, isTerminal(os.NewFile(^uintptr(0), "bad")))
	_, err = newLogger(os.Stderr, "info", "auto")
	require.NoError(t, err)
	_, err = newLogger(&buf, "", "json")
	require.Error(t, err)
}

// Log lines carry nanosecond timestamps, in JSON and on the console
// (issue 12, input 9).
func TestNewLogger_NanosecondTime(t *testing.T) {
	var buf proctest.Buffer
	log, err := newLogger(&buf, "info", "json")
	require.NoError(t, err)
	log.Info().Str("k", "v").Msg("one")
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(buf.String()), &line))
	ts, _ := line["time"].(string)
	assert.Regexp(t, `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$`, ts)
	got, err := time.Parse(time.RFC3339Nano, ts)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), got, time.Minute)

	buf = proctest.Buffer{}
	log, err = newLogger(&buf, "info", "console")
	require.NoError(t, err)
	log.Info().Msg("two")
	assert.Regexp(t, `T\d\d:\d\d:\d\d\.\d+`, buf.String())
}

// --audit-max-age and --audit-max-count reach the audit service's
// retention (issue 12, input 9).
func TestRun_ServeAuditRetention(t *testing.T) {
	cfg, err := parseServe([]string{"--audit-max-age", "720h", "--audit-max-count", "5"}, &proctest.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, 720*time.Hour, cfg.AuditMaxAge)
	assert.Equal(t, uint64(5), cfg.AuditMaxCount)
	t.Setenv("CODI2_AUDIT_MAX_COUNT", "7")
	cfg, err = parseServe(nil, &proctest.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, uint64(7), cfg.AuditMaxCount)
	_, err = parseServe([]string{"--audit-max-age", "-1h"}, &proctest.Buffer{})
	assert.ErrorContains(t, err, "--audit-max-age")

	// A server started with --audit-max-count trims an existing log.
	dir := t.TempDir()
	serve := func(extra ...string) (*audit.Client, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		var logs proctest.Buffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, append([]string{"serve", "--data", dir, "--nats-listen", "127.0.0.1:-1",
				"--http-listen", "127.0.0.1:0", "--log-format", "json"}, extra...), &proctest.Buffer{}, &logs)
		}()
		ready := readyLine(t, &logs, done)
		nc, err := nats.Connect(ready["nats"].(string))
		require.NoError(t, err)
		c, err := audit.NewClient(nc)
		require.NoError(t, err)
		return c, func() {
			nc.Close()
			cancel()
			assert.Equal(t, 0, <-done, logs.String())
		}
	}
	c, stop := serve()
	for range 10 {
		_, err := c.LogAndWait(context.Background(), "agent-1", "x", []byte(`{}`))
		require.NoError(t, err)
	}
	stop()
	c, stop = serve("--audit-max-count", "3")
	defer stop()
	// The first run's shutdown checkpoint (an audit event) may reach the
	// log just after the trim: one record more until the next run.
	require.Eventually(t, func() bool {
		st, err := c.Status(context.Background())
		return err == nil && st.Count >= 3 && st.Count <= 4 && st.FirstSeq > 1
	}, 20*time.Second, 20*time.Millisecond)
}

func TestEnvName(t *testing.T) {
	assert.Equal(t, "CODI2_NATS_LISTEN", envName("nats-listen"))
	assert.Equal(t, "CODI2_FDB_CLUSTER_FILE", envName("fdb-cluster-file"))
}

// With --nats-url, serve runs the services against an existing NATS server:
// the streams are created there and a state command published to it is
// applied.
func TestRun_ServeExternalNATS(t *testing.T) {
	ext := bustest.Run(t, bus.Config{ServerName: "external"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs proctest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data", t.TempDir(), "--nats-url", ext.ClientURL(),
			"--http-listen", "127.0.0.1:0", "--log-format", "json"}, &proctest.Buffer{}, &logs)
	}()
	ready := readyLine(t, &logs, done)
	assert.Equal(t, false, ready["embedded"])
	assert.Equal(t, ext.ClientURL(), ready["nats"])

	nc := bustest.Connect(t, ext)
	c, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	ev, err := c.Apply(ctx, "task", "ADR-028", state.Command{Op: state.OpPut, Fields: map[string]any{"status": "open"}})
	require.NoError(t, err)
	assert.Equal(t, state.StatusApplied, ev.Status)

	cancel()
	assert.Equal(t, 0, <-done, logs.String())
}

// Before the server is started, /healthz and /readyz answer 503 "starting".
func TestHealth_Starting(t *testing.T) {
	h := (&health{}).handler()
	for _, path := range []string{"/healthz", "/readyz", "/v1/status", "/"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code, path)
		assert.Contains(t, rec.Body.String(), "starting", path)
	}
}
