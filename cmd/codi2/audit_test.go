package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startServe runs `codi2 serve` in-process on random ports and returns its
// NATS URL; the server stops (and must exit 0) when the test ends.
func startServe(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var logs proctest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data", t.TempDir(), "--nats-listen", "127.0.0.1:-1",
			"--http-listen", "127.0.0.1:0", "--log-format", "json"}, &proctest.Buffer{}, &logs)
	}()
	ready := readyLine(t, &logs, done)
	t.Cleanup(func() {
		cancel()
		assert.Equal(t, 0, <-done, logs.String())
	})
	return ready["nats"].(string)
}

func TestRun_AuditExportVerify(t *testing.T) {
	url := startServe(t)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	c, err := audit.NewClient(nc)
	require.NoError(t, err)
	ctx := context.Background()
	for _, ev := range []struct{ source, category, data string }{
		{"agent-1", "file", `{"path":"README.md"}`},
		{"agent-2", "task", `{"task":"ADR-028"}`},
		{"agent-1", "file", "not json"},
	} {
		_, err := c.LogAndWait(ctx, ev.source, ev.category, []byte(ev.data))
		require.NoError(t, err)
	}

	dir := t.TempDir()
	all := filepath.Join(dir, "all.jsonl")
	var stdout, stderr proctest.Buffer
	code := run(ctx, []string{"audit", "export", "--nats-url", url, "--out", all}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	assert.Contains(t, stderr.String(), "exported 3 records")
	lines := strings.Split(strings.TrimSpace(readFile(t, all)), "\n")
	require.Len(t, lines, 3)

	// Filters and time bounds reach the query.
	stdout, stderr = proctest.Buffer{}, proctest.Buffer{}
	code = run(ctx, []string{"audit", "export", "--nats-url", url, "--source", "agent-1", "--category", "file",
		"--from", time.Now().Add(-time.Hour).Format(time.RFC3339), "--to", time.Now().Add(time.Hour).Format(time.RFC3339Nano)}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	assert.Len(t, strings.Split(strings.TrimSpace(stdout.String()), "\n"), 2)

	// Offline verify of the export: ok.
	stdout = proctest.Buffer{}
	code = run(ctx, []string{"audit", "verify", "--file", all}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	var res audit.VerifyResult
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &res))
	assert.True(t, res.OK)
	assert.Equal(t, uint64(3), res.Count)

	// A tampered line is caught at its seq, and the command exits 1.
	tampered := filepath.Join(dir, "tampered.jsonl")
	lines[1] = strings.Replace(lines[1], "ADR-028", "ADR-029", 1)
	require.NoError(t, os.WriteFile(tampered, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	stdout, stderr = proctest.Buffer{}, proctest.Buffer{}
	code = run(ctx, []string{"audit", "verify", "--file", tampered}, &stdout, &stderr)
	assert.Equal(t, 1, code)
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &res))
	assert.False(t, res.OK)
	assert.Equal(t, uint64(2), res.BadSeq)
	assert.Contains(t, stderr.String(), "hash chain is broken")

	// Online verify of the server's log.
	stdout = proctest.Buffer{}
	code = run(ctx, []string{"audit", "verify", "--nats-url", url}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	require.NoError(t, json.Unmarshal([]byte(stdout.String()), &res))
	assert.True(t, res.OK)
	assert.Equal(t, uint64(3), res.Count)
	head := res.Head

	// Issue 12, inputs 5 and 6.
	t.Run("extreme and relative times export everything", func(t *testing.T) {
		for _, bounds := range [][]string{
			{"--from", "0001-01-01T00:00:00Z", "--to", "9999-12-31T23:59:59Z"},
			{"--from", "-1h", "--to", "+1h"},
			{"--from", "1h"},
			{"--to", "now"},
		} {
			var stdout, stderr proctest.Buffer
			code := run(ctx, append([]string{"audit", "export", "--nats-url", url}, bounds...), &stdout, &stderr)
			require.Equal(t, 0, code, stderr.String())
			assert.Contains(t, stderr.String(), "exported 3 records", bounds)
		}
	})
	t.Run("expect-head", func(t *testing.T) {
		var stdout, stderr proctest.Buffer
		code := run(ctx, []string{"audit", "verify", "--file", all, "--expect-head", head}, &stdout, &stderr)
		assert.Equal(t, 0, code, stderr.String())
		code = run(ctx, []string{"audit", "verify", "--nats-url", url, "--expect-head", head}, &stdout, &stderr)
		assert.Equal(t, 0, code, stderr.String())

		short := filepath.Join(dir, "short.jsonl")
		good := strings.Split(strings.TrimSpace(readFile(t, all)), "\n")
		require.NoError(t, os.WriteFile(short, []byte(strings.Join(good[:2], "\n")+"\n"), 0o600))
		stdout, stderr = proctest.Buffer{}, proctest.Buffer{}
		code = run(ctx, []string{"audit", "verify", "--file", short}, &stdout, &stderr)
		assert.Equal(t, 0, code, "a missing tail chains correctly: only the head notices")
		stdout, stderr = proctest.Buffer{}, proctest.Buffer{}
		code = run(ctx, []string{"audit", "verify", "--file", short, "--expect-head", head}, &stdout, &stderr)
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr.String(), "the last record is not the expected head")
		var res audit.VerifyResult
		require.NoError(t, json.Unmarshal([]byte(stdout.String()), &res))
		assert.False(t, res.OK)
		assert.Equal(t, uint64(2), res.BadSeq)
	})
	t.Run("nothing to verify", func(t *testing.T) {
		empty := filepath.Join(dir, "empty.jsonl")
		require.NoError(t, os.WriteFile(empty, nil, 0o600))
		for _, args := range [][]string{
			{"audit", "verify", "--file", empty},
			{"audit", "verify", "--nats-url", url, "--from-seq", "100"},
		} {
			var stdout, stderr proctest.Buffer
			assert.Equal(t, 1, run(ctx, args, &stdout, &stderr), args)
			assert.Contains(t, stderr.String(), "nothing to verify")
			var res audit.VerifyResult
			require.NoError(t, json.Unmarshal([]byte(stdout.String()), &res))
			assert.False(t, res.OK)
			assert.True(t, res.Empty)
		}
	})
}

// codi2 audit -h prints the usage and exits 0 (issue 12, input 9).
func TestRun_AuditHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "help"} {
		var stdout, stderr proctest.Buffer
		assert.Equal(t, 0, run(context.Background(), []string{"audit", arg}, &stdout, &stderr), arg)
		assert.Contains(t, stdout.String(), "codi2 audit verify --file FILE")
		assert.Contains(t, stdout.String(), "--expect-head")
	}
	for _, sub := range []string{"export", "verify"} {
		var stdout, stderr proctest.Buffer
		assert.Equal(t, 0, run(context.Background(), []string{"audit", sub, "-h"}, &stdout, &stderr), sub)
		assert.Contains(t, stderr.String(), "-nats-url")
	}
}

func TestRun_AuditErrors(t *testing.T) {
	down := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"no subcommand", []string{"audit"}, "missing subcommand"},
		{"unknown", []string{"audit", "purge"}, `unknown subcommand "purge"`},
		{"bad from", []string{"audit", "export", "--from", "yesterday"}, "--from"},
		{"bad to", []string{"audit", "export", "--to", "1"}, "--to"},
		{"bad relative", []string{"audit", "export", "--from", "--1h"}, "want an RFC 3339 time"},
		{"bad expect-head", []string{"audit", "verify", "--file", "x", "--expect-head", "abc"}, "64 lower-case hex"},
		{"bad flag", []string{"audit", "export", "--nope"}, "flag provided but not defined"},
		{"verify bad flag", []string{"audit", "verify", "--nope"}, "flag provided but not defined"},
		{"export server down", []string{"audit", "export", "--nats-url", down}, "connect"},
		{"export unwritable", []string{"audit", "export", "--out", "/nonexistent/dir/x"}, "no such file"},
		{"verify missing file", []string{"audit", "verify", "--file", "/nonexistent/x"}, "no such file"},
		{"verify server down", []string{"audit", "verify", "--nats-url", down}, "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := 1 // what it does failed
			if !strings.Contains(tt.name, "down") && !strings.Contains(tt.name, "unwritable") && !strings.Contains(tt.name, "missing") {
				want = 2 // bad usage
			}
			var stderr proctest.Buffer
			assert.Equal(t, want, run(context.Background(), tt.args, &proctest.Buffer{}, &stderr))
			assert.Contains(t, stderr.String(), tt.wantStderr)
		})
	}
}

func TestRun_AuditVerifyBadExport(t *testing.T) {
	file := filepath.Join(t.TempDir(), "x.jsonl")
	require.NoError(t, os.WriteFile(file, []byte("this is not an export\n"), 0o600))
	var stdout, stderr proctest.Buffer
	assert.Equal(t, 1, run(context.Background(), []string{"audit", "verify", "--file", file}, &stdout, &stderr))
	assert.NotEmpty(t, stdout.String()+stderr.String())
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
