package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/cli"
	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/internal/servertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startServer runs the whole server (bus, state, audit) in-process on a
// random port and returns its NATS URL.
func startServer(t *testing.T) string {
	t.Helper()
	return servertest.Start(t, false).Bus().ClientURL()
}

type result struct {
	code     int
	out, err string
}

// lines returns the non-empty lines of stdout.
func (r result) lines() []string {
	var out []string
	for _, l := range strings.Split(r.out, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// run runs one verb as agent (none if empty) against url, with stdin in.
func run(t *testing.T, url, agent, in string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	env := map[string]string{"CODI2_NATS_URL": url, "CODI2_AGENT": agent}
	code := cli.Run(context.Background(), args, cli.IO{
		In: strings.NewReader(in), Out: &out, Err: &errb,
		Getenv: func(k string) string { return env[k] },
	})
	return result{code, out.String(), errb.String()}
}

func jsonLine[T any](t *testing.T, line string) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(line), &v), line)
	return v
}

func TestRun_SendInboxPeek(t *testing.T) {
	url := startServer(t)
	r := run(t, url, "orchestrator", "", "send", "agent-2", "task.assign", `{"task":"ADR-028"}`,
		"--importance", "high", "--thread", "t-1", "--reply-to", "7", "--ack-required", "--id", "assign-1", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	sent := jsonLine[cli.Sent](t, r.out)
	assert.Equal(t, cli.Sent{To: "agent-2", Type: "task.assign", Stream: "CODI_MSG", Seq: 1}, sent)
	r = run(t, url, "orchestrator", "", "send", "agent-2", "task.assign", `{"task":"ADR-028"}`, "--id", "assign-1")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "a retry of a message already stored")
	r = run(t, url, "orchestrator", "plain text from stdin", "send", "all", "standup", "-")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, "sent standup to all (CODI_MSG seq 2)\n", r.out)

	r = run(t, url, "agent-2", "", "inbox", "--peek")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	require.Len(t, r.lines(), 2, "peek shows both")
	assert.Contains(t, r.lines()[0], `orchestrator -> agent-2 task.assign [high] [ack required] (reply to #7): {"task":"ADR-028"}`)

	r = run(t, url, "agent-2", "", "inbox", "--json", "--max", "1")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	m := jsonLine[cli.Mail](t, r.out)
	assert.Equal(t, uint64(1), m.Seq)
	assert.Equal(t, "t-1", m.Thread)
	assert.Equal(t, uint64(7), m.ReplyTo)
	assert.True(t, m.AckRequired)
	assert.Equal(t, "high", m.Importance)
	assert.JSONEq(t, `{"task":"ADR-028"}`, string(m.Data))

	r = run(t, url, "agent-2", "", "inbox", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	require.Len(t, r.lines(), 1)
	assert.JSONEq(t, `"plain text from stdin"`, string(jsonLine[cli.Mail](t, r.lines()[0]).Data))
	r = run(t, url, "agent-2", "", "inbox")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Empty(t, r.out, "everything was acked")

	// --wait: nothing pending, a message arrives while it waits.
	go func() {
		time.Sleep(200 * time.Millisecond) // the sender comes later than the waiting inbox
		run(t, url, "orchestrator", "", "send", "agent-2", "ping", "\xff\xfe")
	}()
	r = run(t, url, "agent-2", "", "inbox", "--wait", "10s", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	got := jsonLine[cli.Mail](t, r.out)
	assert.Equal(t, "base64", got.Encoding)
	start := time.Now()
	r = run(t, url, "agent-2", "", "inbox", "--wait", "300ms")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Empty(t, r.out)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "waited")
}

func TestRun_ClaimRenewRelease(t *testing.T) {
	url := startServer(t)
	r := run(t, url, "agent-2", "", "claim", "task", "ADR-028", "--ttl", "5m", "--fields", `{"status":"in_progress"}`, "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	rec := jsonLine[map[string]any](t, r.out)
	assert.Equal(t, float64(1), rec["rev"])
	assert.NotNil(t, rec["expires_at"])

	r = run(t, url, "agent-3", "", "claim", "task", "ADR-028")
	assert.Equal(t, cli.ExitConflict, r.code)
	assert.Contains(t, r.err, "held by agent-2 at rev 1 until ")
	assert.Equal(t, 1, strings.Count(r.err, "\n"), "one line")

	r = run(t, url, "agent-2", "", "renew", "task", "ADR-028", "--rev", "1", "--ttl", "10m")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Contains(t, r.out, "renewed task/ADR-028 rev 2 by agent-2")
	r = run(t, url, "agent-2", "", "renew", "task", "ADR-028", "--rev", "1")
	assert.Equal(t, cli.ExitConflict, r.code, "a stale rev")
	assert.Contains(t, r.err, "the rev given is stale: task/ADR-028 is at rev 2, held by you until ")

	r = run(t, url, "agent-3", "", "release", "task", "ADR-028", "--rev", "1")
	assert.Equal(t, cli.ExitConflict, r.code)
	r = run(t, url, "agent-2", "", "release", "task", "ADR-028", "--rev", "2", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	rel := jsonLine[map[string]any](t, r.out)
	assert.Nil(t, rel["expires_at"], "the lease ended")
	assert.Equal(t, map[string]any{"status": "in_progress"}, rel["fields"], "the record is kept")
	r = run(t, url, "agent-2", "", "release", "task", "ADR-028", "--rev", "3")
	assert.Equal(t, cli.ExitConflict, r.code)
	assert.Contains(t, r.err, "no live lease on task/ADR-028 (rev 3): claim it first")
	r = run(t, url, "agent-3", "", "release", "task", "ADR-028", "--rev", "3", "--delete")
	assert.Equal(t, cli.ExitConflict, r.code, "a record without a lease is not deleted by release")
	assert.Contains(t, r.err, "no live lease on task/ADR-028 (rev 3)")

	r = run(t, url, "agent-3", "", "claim", "task", "ADR-028", "--fields", `{"assignee":"agent-3"}`)
	require.Equal(t, cli.ExitOK, r.code, "a released record is free: %s", r.err)
	// --delete is a release too: only the holder's (a breaker's input:
	// another agent deleted a live claim, and a record with no lease).
	r = run(t, url, "agent-2", "", "release", "task", "ADR-028", "--rev", "4", "--delete")
	assert.Equal(t, cli.ExitConflict, r.code, "another agent's claim")
	assert.Contains(t, r.err, "held by agent-3")
	r = run(t, url, "agent-3", "", "release", "task", "ADR-028", "--rev", "4", "--delete")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	r = run(t, url, "", "", "get", "task", "ADR-028")
	assert.Equal(t, cli.ExitNotFound, r.code)
	r = run(t, url, "agent-3", "", "renew", "task", "ADR-028", "--rev", "5")
	assert.Equal(t, cli.ExitNotFound, r.code)
	assert.Contains(t, r.err, "not found")

	// File paths work as ids as typed.
	r = run(t, url, "agent-2", "", "claim", "file", "src/main.go", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Equal(t, "src/main%2Ego", jsonLine[map[string]any](t, r.out)["id"])
	r = run(t, url, "", "", "get", "file", "src/main.go")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.True(t, strings.HasPrefix(r.out, "file/src/main.go rev 1 by agent-2"), r.out)
	r = run(t, url, "", "", "get", "file", "src/main%2Ego")
	require.Equal(t, cli.ExitOK, r.code, "the id as --json prints it: %s", r.err)
	assert.True(t, strings.HasPrefix(r.out, "file/src/main.go rev 1"), r.out)
	r = run(t, url, "", "", "get", "file", "100%")
	assert.Equal(t, cli.ExitNotFound, r.code, "not an escape: typed as it is (%s)", r.err)
}

func TestRun_ListGetWatch(t *testing.T) {
	url := startServer(t)
	for _, id := range []string{"T-1", "T-2", "X-1"} {
		status := "open"
		if id == "T-2" {
			status = "done"
		}
		r := run(t, url, "orchestrator", "", "claim", "task", id, "--fields", `{"status":"`+status+`","n":1}`)
		require.Equal(t, cli.ExitOK, r.code, r.err)
	}
	r := run(t, url, "", "", "list", "task", "--prefix", "T-")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	require.Len(t, r.lines(), 2)
	r = run(t, url, "", "", "list", "task", "--where", "status=open", "--where", "n=1", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	require.Len(t, r.lines(), 2)
	assert.Equal(t, "T-1", jsonLine[map[string]any](t, r.lines()[0])["id"])
	r = run(t, url, "", "", "list", "task", "--limit", "1")
	assert.Len(t, r.lines(), 1)
	assert.Equal(t, "codi2: stopped at --limit 1; more records follow (raise --limit, or 0 for all)\n", r.err,
		"a cut list says so, as history does (a new user's input: nothing said)")
	r = run(t, url, "", "", "list", "task", "--limit", "3")
	assert.Len(t, r.lines(), 3)
	assert.Empty(t, r.err, "nothing cut, nothing said")
	r = run(t, url, "", "", "list", "task", "--prefix", "T-", "--limit", "2")
	assert.Len(t, r.lines(), 2)
	assert.Empty(t, r.err, "the last one: nothing cut")
	r = run(t, url, "", "", "list", "task", "--since", "1h")
	assert.Len(t, r.lines(), 3)
	r = run(t, url, "", "", "list", "task", "--since", "+1h")
	assert.Empty(t, r.lines())
	r = run(t, url, "", "", "list", "task", "--until", "+1h", "--where", "status=done", "--held", "true")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	assert.Len(t, r.lines(), 1)
	r = run(t, url, "", "", "list", "task", "--until", "1h")
	assert.Empty(t, r.lines())
	r = run(t, url, "", "", "list", "task", "--held", "false")
	assert.Empty(t, r.lines(), "every task is claimed")

	// watch prints events until interrupted.
	var errb bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	w := &proctest.Buffer{}
	go func() {
		done <- cli.Run(ctx, []string{"watch", "task", "--nats-url", url}, cli.IO{Out: w, Err: &errb})
	}()
	// The watch subscribes before it waits: poll until a claim shows up.
	require.Eventually(t, func() bool {
		run(t, url, "agent-9", "", "claim", "task", "T-9")
		return strings.Contains(w.String(), "task.T-9 put applied by agent-9") || strings.Contains(w.String(), "task.T-9 merge applied by agent-9")
	}, 10*time.Second, 50*time.Millisecond)
	cancel()
	assert.Equal(t, cli.ExitOK, <-done, errb.String())
}

func TestRun_LogHistoryStatus(t *testing.T) {
	url := startServer(t)
	r := run(t, url, "agent-2", "", "log", "decision", `{"why":"tests first"}`, "--wait", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	l := jsonLine[cli.Logged](t, r.out)
	assert.Equal(t, "codi.audit.log.agent-2.decision", l.Subject)
	assert.True(t, l.Committed)
	r = run(t, url, "agent-2", "note from stdin", "log", "note", "-", "--wait")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	r = run(t, url, "agent-2", "", "claim", "task", "T-1")
	require.Equal(t, cli.ExitOK, r.code, r.err)

	require.Eventually(t, func() bool {
		r = run(t, url, "", "", "history", "--since", "1h", "--json")
		return len(r.lines()) == 3
	}, 10*time.Second, 20*time.Millisecond, r.out)
	first := jsonLine[map[string]any](t, r.lines()[0])
	assert.Equal(t, "agent-2", first["source"])
	assert.NotEmpty(t, first["hash"], "records as stored")
	r = run(t, url, "", "", "history", "--source", "agent-2", "--category", "note")
	require.Len(t, r.lines(), 1, r.out)
	assert.Contains(t, r.out, `agent-2 note "note from stdin"`, "text that is not JSON shows as text (base64:\"bm90ZS...\" before)")
	r = run(t, url, "agent-2", "\xff\x00\n", "log", "blob", "-", "--wait")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	r = run(t, url, "", "", "history", "--source", "agent-2", "--category", "blob")
	assert.Contains(t, r.out, `agent-2 blob base64:"/wAK"`, "bytes that are not text stay base64")
	r = run(t, url, "", "", "history", "--limit", "1", "--from", "2000-01-01T00:00:00Z", "--to", "now")
	assert.Len(t, r.lines(), 1)
	assert.Equal(t, "codi2: stopped at --limit 1; more records follow (raise --limit, or --from a later time)\n", r.err,
		"a cut list says so (a new user's input: history stopped at 100 without a word)")
	r = run(t, url, "", "", "history", "--limit", "1000")
	assert.Empty(t, r.err, "nothing cut, nothing said")

	r = run(t, url, "", "", "status", "--json")
	require.Equal(t, cli.ExitOK, r.code, r.err)
	st := jsonLine[cli.Status](t, r.out)
	require.NotNil(t, st.State)
	require.NotNil(t, st.Audit)
	assert.Equal(t, uint64(1), st.State.StreamSeq)
	r = run(t, url, "", "", "status")
	assert.Contains(t, r.out, "state: applied and durable through CODI_STATE seq 1")
}

// Exit codes for bad usage and an unreachable server, every verb.
func TestRun_ExitCodes(t *testing.T) {
	url := startServer(t)
	dead := "nats://127.0.0.1:" + strconv.Itoa(proctest.FreePort(t))
	tests := []struct {
		name  string
		agent string
		url   string
		args  []string
		code  int
		msg   string
	}{
		{"no verb args", "a", url, []string{"send", "agent-2"}, cli.ExitUsage, "accepts between 2 and 3 arg(s)"},
		{"unknown flag", "a", url, []string{"inbox", "--nope"}, cli.ExitUsage, "unknown flag: --nope"},
		{"no agent", "", url, []string{"send", "agent-2", "x"}, cli.ExitUsage, "no agent id"},
		{"bad agent", "a.b", url, []string{"inbox"}, cli.ExitUsage, `agent id "a.b"`},
		{"bad target", "a", url, []string{"send", "a.b", "x"}, cli.ExitUsage, "invalid token"},
		{"bad importance", "a", url, []string{"send", "b", "x", "--importance", "meh"}, cli.ExitUsage, "--importance"},
		{"bad kind", "a", url, []string{"claim", "Task", "x"}, cli.ExitUsage, `kind "Task"`},
		{"bad fields", "a", url, []string{"claim", "task", "x", "--fields", "[1]"}, cli.ExitUsage, "--fields"},
		{"bad ttl", "a", url, []string{"claim", "task", "x", "--ttl", "0s"}, cli.ExitUsage, "--ttl"},
		// A breaker's inputs: a lease under a millisecond was a 1 ms lease,
		// lost when printed; one over the limit was the service's
		// rejection in its units.
		{"sub-ms ttl", "a", url, []string{"claim", "task", "x", "--ttl", "1ns"}, cli.ExitUsage, "--ttl 1ns: leases are whole milliseconds"},
		{"fractional-ms ttl", "a", url, []string{"reserve", "x", "--ttl", "1500us"}, cli.ExitUsage, "--ttl 1.5ms: leases are whole milliseconds"},
		{"huge ttl", "a", url, []string{"heartbeat", "--ttl", "2000000h"}, cli.ExitUsage, "--ttl 2000000h0m0s is above the longest lease, 876000h0m0s (100 years)"},
		{"where twice", "a", url, []string{"list", "task", "--where", "c=red", "--where", "c=blue"}, cli.ExitUsage, `--where gives field c twice ("red" and "blue")`},
		{"empty path", "a", url, []string{"reservations", "--path", ""}, cli.ExitUsage, "--path takes a file's path"},
		{"renew without rev", "a", url, []string{"renew", "task", "x"}, cli.ExitUsage, "--rev is required"},
		{"release without rev", "a", url, []string{"release", "task", "x"}, cli.ExitUsage, "--rev is required"},
		{"rev 0", "a", url, []string{"renew", "task", "x", "--rev", "0"}, cli.ExitUsage, "--rev 0: revisions start at 1"},
		{"rev not a number", "a", url, []string{"renew", "task", "x", "--rev", "abc"}, cli.ExitUsage, "--rev abc: want a whole number, 0 or more"},
		{"rev too big", "a", url, []string{"renew", "task", "x", "--rev", "99999999999999999999"}, cli.ExitUsage, "--rev 99999999999999999999: out of range"},
		{"bad since", "a", url, []string{"list", "task", "--since", "yesterday"}, cli.ExitUsage, "--since"},
		{"settle without files", "a", url, []string{"watch", "task", "--settle", "1s"}, cli.ExitUsage, "--settle goes with --files"},
		{"no-hash without files", "a", url, []string{"watch", "task", "--no-hash"}, cli.ExitUsage, "--no-hash goes with --files"},
		{"bad where", "a", url, []string{"list", "task", "--where", "nope"}, cli.ExitUsage, "--where"},
		{"bad until", "a", url, []string{"list", "task", "--until", "later"}, cli.ExitUsage, "--until"},
		{"bad held", "a", url, []string{"list", "task", "--held", "maybe"}, cli.ExitUsage, "--held"},
		{"bad list kind", "a", url, []string{"list", "Task"}, cli.ExitUsage, "kind"},
		{"bad watch kind", "a", url, []string{"watch", "Task"}, cli.ExitUsage, "kind"},
		{"bad category", "a", url, []string{"log", "a.b"}, cli.ExitUsage, "category"},
		{"since and from", "a", url, []string{"history", "--since", "1h", "--from", "now"}, cli.ExitUsage, "give one"},
		{"bad to", "a", url, []string{"history", "--to", "later"}, cli.ExitUsage, "--to"},
		{"oversized", "a", url, []string{"send", "b", "x", strings.Repeat("x", 1<<20)}, cli.ExitUsage, "payload too large"},
		{"bad env timeout", "a", url, []string{"status", "--timeout", "soon"}, cli.ExitUsage, "invalid argument"},
		{"zero timeout", "a", url, []string{"status", "--timeout", "0s"}, cli.ExitUsage, "--timeout must be positive"},
		{"zero history limit", "a", url, []string{"history", "--limit", "0"}, cli.ExitUsage, "--limit must be positive"},
		{"negative list limit", "a", url, []string{"list", "task", "--limit", "-1"}, cli.ExitUsage, "--limit"},
		{"negative max", "a", url, []string{"inbox", "--max", "-1"}, cli.ExitUsage, "--max"},
		{"negative wait", "a", url, []string{"inbox", "--wait", "-1s"}, cli.ExitUsage, "--wait"},
		{"zero renew ttl", "a", url, []string{"renew", "task", "x", "--rev", "1", "--ttl", "0s"}, cli.ExitUsage, "--ttl"},
		{"missing creds", "a", url, []string{"status", "--creds", "/nonexistent.creds"}, cli.ExitUsage, "--creds"},
		{"garbage creds", "a", url, []string{"status", "--creds", "cli_test.go"}, cli.ExitUsage, "not a NATS credentials file"},
		{"reserve outside the repository", "a", url, []string{"reserve", "/etc/passwd"}, cli.ExitUsage, "outside the repository"},
		{"reserve a bad glob", "a", url, []string{"reserve", "src/[a"}, cli.ExitUsage, "pattern"},
		{"reserve nothing", "a", url, []string{"reserve"}, cli.ExitUsage, "requires at least 1 arg"},
		{"reserve zero ttl", "a", url, []string{"reserve", "x", "--ttl", "0s"}, cli.ExitUsage, "--ttl"},
		{"reserve bad project", "a", url, []string{"reserve", "x", "--project", "a.b"}, cli.ExitUsage, "--project"},
		{"unreserve both", "a", url, []string{"unreserve", "x", "--all"}, cli.ExitUsage, "PATTERNs or --all"},
		{"unreserve neither", "a", url, []string{"unreserve"}, cli.ExitUsage, "give the PATTERNs to release, or --all"},
		{"heartbeat zero ttl", "a", url, []string{"heartbeat", "--ttl", "0s"}, cli.ExitUsage, "--ttl"},
		{"reservations with args", "a", url, []string{"reservations", "x"}, cli.ExitUsage, "unknown command"},
		{"since after until", "a", url, []string{"list", "task", "--since", "1m", "--until", "5m"}, cli.ExitUsage, "--since 1m is not before --until 5m"},
		{"negative settle", "a", url, []string{"watch", "--files", ".", "--settle", "-1s"}, cli.ExitUsage, "--settle must not be negative"},
		{"missing watch dir", "a", url, []string{"watch", "--files", "/nonexistent/dir"}, cli.ExitUsage, "watch --files /nonexistent/dir: lstat"},
		{"import without a file", "a", url, []string{"import", "v1"}, cli.ExitUsage, "(usage: codi2 import v1 FILE...)"},
	}
	for _, verb := range [][]string{{"send", "b", "x"}, {"inbox"}, {"claim", "task", "x"}, {"renew", "task", "x", "--rev", "1"},
		{"release", "task", "x", "--rev", "1"}, {"log", "note"}, {"history"}, {"get", "task", "x"}, {"list", "task"},
		{"watch", "task"}, {"status"}, {"reserve", "x"}, {"unreserve", "x"}, {"reservations"}, {"heartbeat"}, {"who"}} {
		tests = append(tests, struct {
			name  string
			agent string
			url   string
			args  []string
			code  int
			msg   string
		}{"unreachable " + verb[0], "a", dead, append(verb, "--timeout", "1s"), cli.ExitUnreachable, "cannot reach the codi2 server"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := run(t, tt.url, tt.agent, "", tt.args...)
			assert.Equal(t, tt.code, r.code, r.err)
			assert.Contains(t, r.err, tt.msg)
			assert.Equal(t, 1, strings.Count(r.err, "\n"), "one line: %q", r.err)
			assert.Less(t, time.Since(start), 5*time.Second)
		})
	}
	assert.True(t, cli.IsVerb("claim"))
	assert.False(t, cli.IsVerb("serve"))
}

// watch KIND ID follows one record, rejections included.
func TestRun_WatchOneRecord(t *testing.T) {
	url := startServer(t)
	var errb bytes.Buffer
	w := &proctest.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, []string{"watch", "file", "src/main.go", "--nats-url", url}, cli.IO{Out: w, Err: &errb})
	}()
	require.Eventually(t, func() bool {
		run(t, url, "agent-1", "", "claim", "file", "src/main.go")
		run(t, url, "agent-2", "", "claim", "file", "src/main.go")
		run(t, url, "agent-2", "", "claim", "file", "other.go")
		return strings.Contains(w.String(), "put rejected by agent-2: conflict")
	}, 10*time.Second, 50*time.Millisecond)
	r := run(t, url, "", "", "get", "file", "src/main.go", "--json")
	rev := jsonLine[map[string]any](t, r.out)["rev"].(float64)
	require.Equal(t, cli.ExitOK, run(t, url, "agent-1", "", "renew", "file", "src/main.go", "--rev", strconv.Itoa(int(rev))).code)
	want := "codi.state.evt.file.src/main%2Ego merge applied by agent-1 -> rev " + strconv.Itoa(int(rev)+1)
	require.Eventually(t, func() bool {
		return strings.Contains(w.String(), want)
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	assert.Equal(t, cli.ExitOK, <-done, errb.String())
	assert.NotContains(t, w.String(), "other")
}

// status against a NATS server without codi2's services: exit 5, and what
// did answer is still printed.
func TestRun_Status_ServicesMissing(t *testing.T) {
	b := bustest.Run(t)
	r := run(t, b.ClientURL(), "", "", "status", "--json", "--timeout", "500ms")
	assert.Equal(t, cli.ExitUnreachable, r.code)
	st := jsonLine[cli.Status](t, r.out)
	assert.Nil(t, st.State)
	assert.Len(t, st.Errors, 2)
	assert.Contains(t, r.err, "answered only in part")
	r = run(t, b.ClientURL(), "", "", "status", "--timeout", "500ms")
	assert.Contains(t, r.out, "state: ")
}

func TestRun_Inbox_PeekMaxAndWaitMax(t *testing.T) {
	url := startServer(t)
	for range 3 {
		require.Equal(t, cli.ExitOK, run(t, url, "orchestrator", "", "send", "agent-2", "x", "hi").code)
	}
	r := run(t, url, "agent-2", "", "inbox", "--peek", "--max", "2")
	assert.Len(t, r.lines(), 2)
	r = run(t, url, "agent-2", "", "inbox", "--wait", "1s", "--max", "2")
	assert.Len(t, r.lines(), 2)
	r = run(t, url, "agent-2", "", "inbox", "--wait", "1s", "--max", "2")
	assert.Len(t, r.lines(), 1)
	go func() {
		time.Sleep(100 * time.Millisecond) // sent while the inbox waits
		for range 3 {
			run(t, url, "orchestrator", "", "send", "agent-2", "x", "later")
		}
	}()
	r = run(t, url, "agent-2", "", "inbox", "--wait", "10s", "--max", "2")
	assert.GreaterOrEqual(t, len(r.lines()), 1)
	assert.LessOrEqual(t, len(r.lines()), 2)
}

// With auth on: another agent's credentials are refused at once (exit 1,
// one line, not a timeout), missing ones at connect (exit 1), and an
// oversized audit event is bad usage (exit 2).
func TestRun_AuthRefusalsAndPayload(t *testing.T) {
	s := servertest.Start(t, true)
	file := servertest.Creds(t, s, "agent-1", auth.RoleAgent)
	url := s.Bus().ClientURL()

	for _, args := range [][]string{{"send", "agent-3", "x", "{}"}, {"claim", "task", "T-1"}, {"log", "note", "x"}} {
		start := time.Now()
		r := run(t, url, "agent-2", "", append(args, "--creds", file, "--timeout", "10s")...)
		assert.Equal(t, cli.ExitError, r.code, "%v: %s", args, r.err)
		assert.Contains(t, r.err, "permissions violation")
		assert.Contains(t, r.err, "an agent acts only as itself")
		assert.Equal(t, 1, strings.Count(r.err, "\n"), "one line: %q", r.err)
		assert.Less(t, time.Since(start), 5*time.Second, "%v refused at once", args)
	}
	r := run(t, url, "agent-1", "", "status")
	assert.Equal(t, cli.ExitError, r.code)
	assert.Contains(t, r.err, "refused the credentials")

	r = run(t, url, "agent-1", strings.Repeat("a", 1_100_000), "log", "big", "-", "--creds", file)
	assert.Equal(t, cli.ExitUsage, r.code, r.err)
	assert.Contains(t, r.err, "max payload")

	// Multi-record commands, presence and reservations work with an
	// agent's own credentials, and only as itself.
	gitRepo(t)
	for _, args := range [][]string{{"heartbeat"}, {"reserve", "x/**"}, {"reservations"}, {"who"}, {"unreserve", "x/**"}, {"heartbeat", "--stop"}} {
		r = run(t, url, "agent-1", "", append(args, "--creds", file)...)
		assert.Equal(t, cli.ExitOK, r.code, "%v: %s", args, r.err)
	}
	for _, args := range [][]string{{"heartbeat"}, {"reserve", "x/**"}} {
		r = run(t, url, "agent-2", "", append(args, "--creds", file, "--timeout", "10s")...)
		assert.Equal(t, cli.ExitError, r.code, "%v as another agent: %s", args, r.err)
		assert.Contains(t, r.err, "permissions violation")
	}
}
