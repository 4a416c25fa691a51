package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/internal/proctest"
)

// serveOn runs `codi2 serve` in-process on data with the checkpoint key
// key until the returned stop is called; it returns the NATS URL.
func serveOn(t *testing.T, data, key string) (url string, stop func()) {
	t.Helper()
	ready, stop := serveWith(t, "--data", data, "--audit-key", key)
	return ready["nats"].(string), stop
}

// serveWith runs `codi2 serve` in-process with args (on loopback ports of
// its own, JSON logs) until the returned stop is called, which checks
// that it exits 0; it returns the ready line's fields.
func serveWith(t *testing.T, args ...string) (ready map[string]any, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var logs proctest.Buffer
	done := make(chan int, 1)
	args = append(append([]string{"serve"}, args...), "--nats-listen", "127.0.0.1:-1", "--http-listen", "127.0.0.1:0", "--log-format", "json")
	go func() { done <- run(ctx, args, &proctest.Buffer{}, &logs) }()
	ready = readyLine(t, &logs, done)
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			assert.Equal(t, 0, <-done, logs.String())
		}
	}
	t.Cleanup(stop)
	return ready, stop
}

// rechainExport rewrites the data of the record on line i (0-based) of an
// export and recomputes every later hash, following the README's recipe:
// what someone who can write audit.db could produce.
func rechainExport(t *testing.T, lines []string, i int, from, to string) []string {
	t.Helper()
	out := make([]string, len(lines))
	prev := ""
	for n, line := range lines {
		body := line[:len(line)-75] // without ,"hash":"<64 hex>"}
		if n == i {
			require.Contains(t, body, from)
			body = strings.Replace(body, from, to, 1)
		}
		k := strings.LastIndex(body, `,"prev":"`)
		if prev == "" {
			prev = body[k+len(`,"prev":"`) : len(body)-1]
		} else {
			body = body[:k] + `,"prev":"` + prev + `"`
		}
		h := sha256.Sum256([]byte(prev + body + "}"))
		prev = hex.EncodeToString(h[:])
		out[n] = body + `,"hash":"` + prev + `"}`
	}
	return out
}

// TestRun_AuditVerifyCheckpoints is issue 11's input 8 on the command
// line: the server signs checkpoints with a key outside audit.db; an export
// rewritten and re-chained passes `audit verify --file` but not `audit
// verify --file X --checkpoints Y --key PUB`, and the online verify checks
// the log against the same checkpoints.
func TestRun_AuditVerifyCheckpoints(t *testing.T) {
	data, keys := t.TempDir(), t.TempDir()
	key := filepath.Join(keys, "audit.key")
	url, stop := serveOn(t, data, key)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	c, err := audit.NewClient(nc)
	require.NoError(t, err)
	ctx := context.Background()
	for _, d := range []string{`{"n":1}`, `{"n":2}`, `{"n":3}`} {
		_, err := c.LogAndWait(ctx, "agent-1", "note", []byte(d))
		require.NoError(t, err)
	}
	nc.Close()
	stop() // publishes a checkpoint of the head on the way out
	url, _ = serveOn(t, data, key)
	nc, err = nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	c, err = audit.NewClient(nc)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		res, err := c.Query(ctx, audit.Query{Source: audit.CheckpointSource, Category: audit.CheckpointCategory})
		return err == nil && len(res.Records) == 1
	}, 10*time.Second, 20*time.Millisecond, "the shutdown checkpoint reaches the log at the next start")

	dir := t.TempDir()
	all := filepath.Join(dir, "all.jsonl")
	var stdout, stderr proctest.Buffer
	require.Equal(t, 0, run(ctx, []string{"audit", "export", "--nats-url", url, "--out", all}, &stdout, &stderr), stderr.String())
	cps := filepath.Join(dir, "checkpoints.jsonl")
	require.Equal(t, 0, run(ctx, []string{"audit", "export", "--nats-url", url, "--source", "codi-audit", "--category", "checkpoint", "--out", cps}, &stdout, &stderr), stderr.String())

	verify := func(args ...string) (int, audit.VerifyResult) {
		t.Helper()
		var out, errOut proctest.Buffer
		code := run(ctx, append([]string{"audit", "verify"}, args...), &out, &errOut)
		var res audit.VerifyResult
		if code != 2 {
			require.NoError(t, json.Unmarshal([]byte(out.String()), &res), errOut.String())
		}
		return code, res
	}
	code, res := verify("--file", all, "--checkpoints", cps, "--key", key+".pub")
	require.Equal(t, 0, code)
	assert.True(t, res.OK)
	// One checkpoint, in the export and in the file: counted once (it was
	// 2 offline, and 3 online with the file: the log's record, the
	// stream's newest and the file's).
	assert.Equal(t, 1, res.Checkpoints, "the one checkpoint, in both files")
	code, res = verify("--nats-url", url, "--checkpoints", cps, "--key", key+".pub")
	require.Equal(t, 0, code)
	assert.Equal(t, 1, res.Checkpoints, "the server's own check and the file's, of one checkpoint")
	code, res = verify("--nats-url", url)
	require.Equal(t, 0, code)
	assert.Equal(t, 1, res.Checkpoints, "the log's record and the stream's newest are one checkpoint")

	lines := strings.Split(strings.TrimSpace(readFile(t, all)), "\n")
	rewritten := filepath.Join(dir, "rewritten.jsonl")
	require.NoError(t, os.WriteFile(rewritten, []byte(strings.Join(rechainExport(t, lines, 1, `{"n":2}`, `{"n":9}`), "\n")+"\n"), 0o600))
	code, res = verify("--file", rewritten)
	require.Equal(t, 0, code, "the chain alone passes: %+v", res)
	code, res = verify("--file", rewritten, "--checkpoints", cps, "--key", key+".pub")
	assert.Equal(t, 1, code)
	assert.False(t, res.OK)
	assert.Contains(t, res.Reason, "rewritten")
	code, res = verify("--file", rewritten, "--key", key+".pub")
	assert.Equal(t, 1, code, "the export's own checkpoint catches it too")
	assert.False(t, res.OK)
}

func TestRun_AuditVerifyCheckpointErrors(t *testing.T) {
	dir := t.TempDir()
	_, vkey, err := audit.LoadCheckpointKey(filepath.Join(dir, "audit.key"))
	require.NoError(t, err)
	export := filepath.Join(dir, "x.jsonl")
	require.NoError(t, os.WriteFile(export, []byte("not a record\n"), 0o600))
	empty := filepath.Join(dir, "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	down := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"no key", []string{"audit", "verify", "--file", empty, "--checkpoints", empty}, "needs --key"},
		{"key file missing", []string{"audit", "verify", "--file", empty, "--key", filepath.Join(dir, "nope.pub")}, "no such file"},
		{"key not a key", []string{"audit", "verify", "--file", empty, "--key", "a+b+c"}, "bad checkpoint"},
		{"checkpoints missing", []string{"audit", "verify", "--file", empty, "--key", vkey, "--checkpoints", filepath.Join(dir, "nope")}, "no such file"},
		{"checkpoints not records", []string{"audit", "verify", "--file", empty, "--key", vkey, "--checkpoints", export}, "line 1"},
		{"stdin", []string{"audit", "verify", "--file", "-", "--key", vkey}, "standard input"},
		{"export missing", []string{"audit", "verify", "--file", filepath.Join(dir, "nope"), "--key", vkey}, "no such file"},
		{"nothing covers", []string{"audit", "verify", "--file", empty, "--key", filepath.Join(dir, "audit.key.pub")}, "hash chain is broken"},
		{"server down", []string{"audit", "verify", "--nats-url", down, "--key", vkey}, "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := 1
			if tt.name == "no key" || tt.name == "stdin" {
				want = 2 // flags that do not go together: bad usage
			}
			var stderr proctest.Buffer
			assert.Equal(t, want, run(context.Background(), tt.args, &proctest.Buffer{}, &stderr))
			assert.Contains(t, stderr.String(), tt.wantStderr)
		})
	}
}
