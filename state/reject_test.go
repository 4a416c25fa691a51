package state_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/state"
)

// Every kind of bad command is rejected with an event (when its subject
// names a record) and an audit record, advances the watermark, and does not
// hold up the good commands behind it.
func TestService_Apply_BadInput(t *testing.T) {
	e := newEnv(t)
	w := e.watchEvents()
	e.start(fastConfig())
	ok := cmdSubject(t, "task", "t1", "agent-1")
	huge := strings.Repeat("x", 100_001)
	tests := []struct {
		name, subject, payload string
		wantEvent              bool
		wantDetail             string
	}{
		{"bad json", ok, `{"op":`, true, "invalid JSON"},
		{"not an object", ok, `[1]`, true, "invalid JSON"},
		{"empty payload", ok, ``, true, "invalid JSON"},
		{"trailing data", ok, `{"op":"put"} x`, true, "data after"},
		{"missing op", ok, `{"fields":{}}`, true, "op is required"},
		{"unknown op", ok, `{"op":"upsert"}`, true, "unknown op"},
		{"unknown field", ok, `{"op":"put","expect_revision":1}`, true, "unknown field"},
		{"fields not an object", ok, `{"op":"put","fields":[1,2]}`, true, "fields must be an object"},
		{"fields a string", ok, `{"op":"merge","fields":"x"}`, true, "fields must be an object"},
		{"fields bad inside", ok, `{"op":"merge","fields":{"a":}}`, true, "invalid JSON"},
		{"negative ttl", ok, `{"op":"put","ttl_ms":-5}`, true, "negative"},
		{"huge ttl", ok, `{"op":"put","ttl_ms":99999999999999}`, true, "ttl_ms"},
		{"fractional ttl", ok, `{"op":"put","ttl_ms":1.5}`, true, "invalid JSON"},
		{"negative expect_rev", ok, `{"op":"put","expect_rev":-1}`, true, "negative"},
		{"delete with fields", ok, `{"op":"delete","fields":{"a":1}}`, true, "delete takes no fields"},
		{"delete with ttl", ok, `{"op":"delete","ttl_ms":5}`, true, "delete takes no fields"},
		{"oversized record", ok, fmt.Sprintf(`{"op":"put","fields":{"x":%q}}`, huge), true, "above the limit"},
		{"reserved actor", "codi.state.cmd.task.t1.all", `{"op":"put"}`, true, "subject"},
		{"bad kind", "codi.state.cmd.Task.t1.agent-1", `{"op":"put"}`, false, "subject"},
		{"too few tokens", "codi.state.cmd.task.t1", `{"op":"put"}`, false, "subject"},
		{"too many tokens", "codi.state.cmd.task.t1.agent-1.x", `{"op":"put"}`, false, "subject"},
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
			a, found := audits[fmt.Sprintf("state-%d", seqs[i])]
			require.True(t, found, "audit record")
			assert.Equal(t, "rejected", a.body["status"])
			assert.Equal(t, "bad_request", a.body["reason"])
			assert.Contains(t, a.body["detail"], tt.wantDetail)
			assert.Equal(t, float64(seqs[i]), a.body["seq"])
			if !tt.wantEvent {
				for _, ev := range w.all() {
					assert.NotEqual(t, seqs[i], ev.ev.Seq)
				}
				assert.Equal(t, "", a.body["kind"])
				return
			}
			got := w.waitSeq(t, seqs[i])
			assert.Equal(t, "codi.state.evt.task.t1", got.subject)
			assert.Equal(t, state.StatusRejected, got.ev.Status)
			assert.Equal(t, state.ReasonBadRequest, got.ev.Reason)
			assert.Contains(t, got.ev.Detail, tt.wantDetail)
			assert.NotContains(t, got.raw, "current_rev")
			assert.Equal(t, "task", a.body["kind"])
			assert.Equal(t, "t1", a.body["id"])
		})
	}
	a := audits[fmt.Sprintf("state-%d", good)]
	assert.Equal(t, map[string]any{"seq": float64(good), "status": "applied", "kind": "task", "id": "t1",
		"actor": "agent-1", "op": "put", "rev": float64(1), "reason": "", "detail": ""}, a.body)
	assert.Equal(t, "codi.audit.log.codi-state.state.task", a.subject)
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
