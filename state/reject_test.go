package state_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/state"
)

// Every kind of bad command is rejected with an event and an audit record,
// advances the watermark, and does not hold up the good commands behind it.
// A command whose subject does not parse gets its event on
// codi.state.evt.bad_request, with the raw subject and whatever of kind, id
// and actor is valid (issue 12, inputs 1-3).
func TestService_Apply_BadInput(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	ok := cmdSubject(t, "task", "t1", "agent-1")
	huge := strings.Repeat("x", 100_001)
	deep := `{"op":"put","fields":{"x":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}}`
	const evt, bad = "codi.state.evt.task.t1", "codi.state.evt.bad_request"
	tests := []struct {
		name, subject, payload string
		wantEvent              string // subject of the rejection event
		wantDetail             string
		wantKind, wantID       string
		wantActor              string
	}{
		{"bad json", ok, `{"op":`, evt, "invalid JSON", "task", "t1", "agent-1"},
		{"not an object", ok, `[1]`, evt, "want an object, not array", "task", "t1", "agent-1"},
		{"empty payload", ok, ``, evt, "invalid JSON: empty", "task", "t1", "agent-1"},
		{"trailing data", ok, `{"op":"put","fields":{}} x`, evt, "invalid JSON", "task", "t1", "agent-1"},
		{"missing op", ok, `{"fields":{}}`, evt, "op is required", "task", "t1", "agent-1"},
		{"unknown op", ok, `{"op":"upsert"}`, evt, "unknown op", "task", "t1", "agent-1"},
		{"unknown member", ok, `{"op":"put","fields":{},"expect_revision":1}`, evt, `unknown member "expect_revision" (members: op, fields, expect_rev, ttl_ms, bind)`, "task", "t1", "agent-1"},
		{"op not a string", ok, `{"op":["put"]}`, evt, "op must be a string, not array", "task", "t1", "agent-1"},
		{"fields not an object", ok, `{"op":"put","fields":[1,2]}`, evt, "fields must be an object", "task", "t1", "agent-1"},
		{"fields a string", ok, `{"op":"merge","fields":"x"}`, evt, "fields must be an object", "task", "t1", "agent-1"},
		{"fields bad inside", ok, `{"op":"merge","fields":{"a":}}`, evt, "invalid JSON", "task", "t1", "agent-1"},
		{"negative ttl", ok, `{"op":"put","fields":{},"ttl_ms":-5}`, evt, "negative", "task", "t1", "agent-1"},
		{"huge ttl", ok, `{"op":"put","fields":{},"ttl_ms":99999999999999}`, evt, "ttl_ms", "task", "t1", "agent-1"},
		{"fractional ttl", ok, `{"op":"put","fields":{},"ttl_ms":1.5}`, evt, "ttl_ms must be an integer, not number 1.5", "task", "t1", "agent-1"},
		{"negative expect_rev", ok, `{"op":"put","fields":{},"expect_rev":-1}`, evt, "negative", "task", "t1", "agent-1"},
		{"delete with fields", ok, `{"op":"delete","fields":{"a":1}}`, evt, "delete takes no fields", "task", "t1", "agent-1"},
		{"delete with ttl", ok, `{"op":"delete","ttl_ms":5}`, evt, "delete takes no fields", "task", "t1", "agent-1"},
		{"oversized record", ok, fmt.Sprintf(`{"op":"put","fields":{"x":%q}}`, huge), evt, "above the limit", "task", "t1", "agent-1"},
		// Issue 12, input 3: strict decoding.
		{"invalid utf-8 in a field", ok, "{\"op\":\"put\",\"fields\":{\"x\":\"a\xffb\"}}", evt, "not valid UTF-8", "task", "t1", "agent-1"},
		{"nested 5000 deep", ok, deep, evt, "more than 64 levels", "task", "t1", "agent-1"},
		{"duplicate op", ok, `{"op":"merge","op":"put","fields":{}}`, evt, `duplicate member "op"`, "task", "t1", "agent-1"},
		{"duplicate field", ok, `{"op":"merge","fields":{"a":1,"a":2}}`, evt, `duplicate member "a"`, "task", "t1", "agent-1"},
		{"put without fields", ok, `{"op":"put"}`, evt, "put needs fields", "task", "t1", "agent-1"},
		{"put with null fields", ok, `{"op":"put","fields":null}`, evt, "put needs fields", "task", "t1", "agent-1"},
		// Issue 12, inputs 1 and 2: subjects that do not parse.
		{"reserved actor", "codi.state.cmd.task.t1.all", `{"op":"put","fields":{}}`, bad, "reserved", "task", "t1", ""},
		{"bad kind", "codi.state.cmd.Task.t1.agent-1", `{"op":"put","fields":{}}`, bad, "kind", "", "", "agent-1"},
		{"too few tokens", "codi.state.cmd.task.t1", `{"op":"put","fields":{}}`, bad, "not a codi2 subject", "task", "", ""},
		{"unescaped path", "codi.state.cmd.file.src/main.go.agent-2", `{"op":"put","fields":{}}`, bad,
			`the id "src/main.go" must be one token: escape it as "src/main%2Ego"`, "file", "", "agent-2"},
		{"lower-case escape", "codi.state.cmd.file.src/main%2ego.agent-2", `{"op":"put","fields":{}}`, bad,
			"must be upper case (%2E)", "file", "", "agent-2"},
		{"needless escape", "codi.state.cmd.file.%61.agent-2", `{"op":"put","fields":{}}`, bad,
			`an escape of "a", which is written as is`, "file", "", "agent-2"},
		{"bad escape", "codi.state.cmd.file.x%ZZ.agent-2", `{"op":"put","fields":{}}`, bad, "two upper-case hex digits", "file", "", "agent-2"},
		{"escaped actor", "codi.state.cmd.file.x.agent%2D2", `{"op":"put","fields":{}}`, bad, "an escape of", "file", "x", ""},
	}
	seqs := make([]uint64, len(tests))
	for i, tt := range tests {
		seqs[i] = e.publish(tt.subject, tt.payload)
	}
	good := e.publish(ok, `{"op":"put","fields":{"fine":true}}`)
	e.waitApplied(good)

	assert.Equal(t, state.StatusApplied, w.waitSeq(t, good).ev.Status)
	rec, err := e.client("x").Get(ctxT(t), "task", "t1", good)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rec.Rev, "rejections change nothing")

	var audits map[string]auditEvent
	require.Eventually(t, func() bool {
		audits = e.auditByID()
		return len(audits) == len(tests)+1
	}, 5e9, 1e7)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, found := audits[e.cmdID(seqs[i])]
			require.True(t, found, "audit record")
			assert.Equal(t, "rejected", a.body["status"])
			assert.Equal(t, "bad_request", a.body["reason"])
			assert.Contains(t, a.body["detail"], tt.wantDetail)
			assert.NotContains(t, a.body["detail"], "Go ")
			assert.Equal(t, float64(seqs[i]), a.body["seq"])
			assert.Equal(t, tt.wantKind, a.body["kind"])
			assert.Equal(t, tt.wantID, a.body["id"])
			assert.Equal(t, tt.wantActor, a.body["actor"])
			got := w.waitSeq(t, seqs[i])
			assert.Equal(t, tt.wantEvent, got.subject)
			assert.Equal(t, state.StatusRejected, got.ev.Status)
			assert.Equal(t, state.ReasonBadRequest, got.ev.Reason)
			assert.Contains(t, got.ev.Detail, tt.wantDetail)
			assert.Equal(t, tt.wantActor, got.ev.Actor)
			assert.NotContains(t, got.raw, "current_rev")
			if tt.wantEvent == bad {
				assert.Equal(t, tt.subject, got.ev.Subject, "the raw subject")
				assert.Equal(t, tt.subject, a.body["subject"])
			} else {
				assert.NotContains(t, got.raw, "subject")
			}
		})
	}
	a := audits[e.cmdID(good)]
	assert.Equal(t, map[string]any{"seq": float64(good), "status": "applied", "kind": "task", "id": "t1",
		"actor": "agent-1", "op": "put", "rev": float64(1), "reason": "", "detail": ""}, a.body)
	assert.Equal(t, "codi.audit.log.codi-state.state.task", a.subject)
}

// Two spellings of one file are not two records: the non-canonical one is
// refused, so the second agent's claim cannot succeed beside the first
// (issue 12, input 2).
func TestService_Claim_OneSpellingPerID(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	claim := `{"op":"put","fields":{},"expect_rev":0,"ttl_ms":60000}`
	first := e.publish("codi.state.cmd.file.src/main%2Ego.agent-1", claim)
	for _, other := range []string{"src/main%2ego", "%73rc/main%2Ego", "src%2Fmain%2Ego"} {
		seq := e.publish("codi.state.cmd.file."+other+".agent-2", claim)
		got := w.waitSeq(t, seq)
		assert.Equal(t, state.StatusRejected, got.ev.Status, other)
		assert.Equal(t, "codi.state.evt.bad_request", got.subject, other)
	}
	assert.Equal(t, state.StatusApplied, w.waitSeq(t, first).ev.Status)
	res, err := e.client("x").List(ctxT(t), "file", state.ListOptions{})
	require.NoError(t, err)
	require.Len(t, res.Records, 1)
	assert.Equal(t, "src/main%2Ego", res.Records[0].ID)
}

// The Go client validates what it can before publishing.
func TestClient_Apply_InvalidArguments(t *testing.T) {
	e := newEnv(t)
	c := e.client("agent-1")
	ctx := ctxT(t)
	_, err := c.Apply(ctx, "Task", "t1", state.Command{Op: state.OpPut})
	require.ErrorIs(t, err, state.ErrBadRequest)
	_, err = c.Apply(ctx, "task", "t1", state.Command{Op: state.OpPut, Fields: map[string]any{"f": func() {}}})
	require.ErrorIs(t, err, state.ErrBadRequest)
	_, err = c.Claim(ctx, "task", "t1", -1, nil)
	require.ErrorIs(t, err, state.ErrBadRequest)
	_, err = c.List(ctx, "Task", state.ListOptions{})
	require.ErrorIs(t, err, state.ErrBadRequest)

	_, err = state.NewClient(e.nc, "all")
	require.ErrorIs(t, err, state.ErrConfig)
	_, err = state.NewClient(nil, "agent-1")
	require.ErrorIs(t, err, state.ErrConfig)
}

// logBuffer is a goroutine-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(l.b.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// An operator running at the default info level sees every rejected
// command: who sent it, what it named, and why (issue 12, inputs 1 and 9).
func TestService_Reject_LoggedAtInfo(t *testing.T) {
	e := newEnv(t)
	var logs logBuffer
	nc, err := e.b.Connect("codi-state")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	svc, err := state.New(fastConfig(), nc, e.store, zerolog.New(&logs).Level(zerolog.InfoLevel))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	<-svc.Ready()

	e.publish("codi.state.cmd.file.src/main.go.agent-2", `{"op":"put","fields":{}}`)
	e.publish(cmdSubject(t, "task", "t1", "agent-3"), `{"op":"put"}`)
	e.waitApplied(2)
	var got []map[string]any
	require.Eventually(t, func() bool {
		got = nil
		for _, l := range logs.lines() {
			if l["message"] == "command rejected" {
				got = append(got, l)
			}
		}
		return len(got) == 2
	}, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "info", got[0]["level"])
	assert.Equal(t, "agent-2", got[0]["agent"])
	assert.Equal(t, "file", got[0]["kind"])
	assert.Equal(t, "codi.state.cmd.file.src/main.go.agent-2", got[0]["subject"])
	assert.Equal(t, "bad_request", got[0]["reason"])
	assert.Contains(t, got[0]["detail"], "src/main%2Ego")
	assert.Equal(t, "agent-3", got[1]["agent"])
	assert.Equal(t, "task", got[1]["kind"])
	assert.Equal(t, "t1", got[1]["id"])
	assert.Equal(t, "put", got[1]["op"])
	assert.Contains(t, got[1]["detail"], "put needs fields")
}

// Audit publishes that fail together are logged as one line with their
// count and range, not one line per command (issue 12, input 9).
func TestService_AuditFailures_LoggedAsOneLine(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	require.NoError(t, e.js.DeleteStream(ctx, bus.StreamAudit))
	subj := cmdSubject(t, "task", "t1", "agent-1")
	var last uint64
	for i := range 200 {
		last = e.publish(subj, fmt.Sprintf(`{"op":"merge","fields":{"n":%d}}`, i))
	}
	var logs logBuffer
	nc, err := e.b.Connect("codi-state")
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	cfg := fastConfig()
	cfg.ShutdownTimeout = 200 * time.Millisecond
	svc, err := state.New(cfg, nc, e.store, zerolog.New(&logs).Level(zerolog.WarnLevel))
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	e.waitApplied(last)
	var first map[string]any
	require.Eventually(t, func() bool {
		for _, l := range logs.lines() {
			if l["message"] == "audit events not acknowledged; retrying" {
				first = l
				return true
			}
		}
		return false
	}, 10*time.Second, 5*time.Millisecond)
	assert.Greater(t, first["count"], float64(1), "one line covers the publishes that failed together")
	assert.Contains(t, first["first"], "state-")
	assert.Contains(t, first["last"], "state-")
	n := 0
	for _, l := range logs.lines() {
		if strings.Contains(fmt.Sprint(l["message"]), "not acknowledged") {
			n++
		}
	}
	assert.Less(t, n, 20, "not a line per command")
}
