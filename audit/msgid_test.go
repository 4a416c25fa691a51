package audit

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logPastWindow logs an event with a Nats-Msg-Id, retrying while JetStream
// still takes it for a duplicate (the harness's window is short), so that
// what happens to it is the log's own dedupe.
func (h *harness) logPastWindow(source, category, id string) *jetstream.PubAck {
	h.t.Helper()
	var ack *jetstream.PubAck
	require.Eventually(h.t, func() bool {
		a, err := h.client.Log(context.Background(), source, category, []byte(`{"id":"`+id+`"}`), WithMsgID(id))
		if err != nil || a.Duplicate {
			return false
		}
		ack = a
		return true
	}, 5*time.Second, 20*time.Millisecond, "the duplicate window never passed")
	return ack
}

// msgIDsOf returns source/msg_id of each record.
func msgIDsOf(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Source + "/" + r.MsgID
	}
	return out
}

// TestService_Run_MsgIDDedupeScopedToSource is issue 11's input 6 at the
// log: agent-9 reusing the id the state service is about to use (and has
// used) removes nothing of the state service's, while each source's own
// retries are still recorded once.
func TestService_Run_MsgIDDedupeScopedToSource(t *testing.T) {
	h := newHarness(t, Config{}, bus.Config{DuplicateWindow: 100 * time.Millisecond})
	h.logPastWindow("agent-9", "note", "state-8") // aimed at the next state record
	h.logPastWindow("codi-state", "state", "state-7")
	h.logPastWindow("codi-state", "state", "state-8")     // must not be taken for agent-9's
	h.logPastWindow("agent-9", "note", "state-7")         // must not be taken for codi-state's
	h.logPastWindow("codi-state", "state", "state-7")     // a retry: dropped
	last := h.logPastWindow("agent-9", "note", "state-8") // a retry: dropped
	h.waitCommitted(last.Sequence)

	recs := h.wholeLog(4)
	assert.Equal(t, []string{"agent-9/state-8", "codi-state/state-7", "codi-state/state-8", "agent-9/state-7"}, msgIDsOf(recs))
	assert.True(t, h.verify(VerifyRequest{}).OK)
}

// toLegacyMsgIDs rewrites the store's dedupe keys into the layout before
// dedupe was scoped to the source, as a log written by that version holds
// them.
func toLegacyMsgIDs(t *testing.T, store kv.Store) {
	t.Helper()
	err := store.Update(context.Background(), func(tx kv.Txn) error {
		begin, end := kv.Tuple{nsMsgID}.Range()
		kvs, err := tx.GetRange(begin, end, kv.RangeOptions{})
		if err != nil {
			return err
		}
		require.NotEmpty(t, kvs)
		for _, p := range kvs {
			tup, err := kv.Unpack(p.Key)
			require.NoError(t, err)
			require.NoError(t, tx.Set(kv.Tuple{nsLegacyMsgID, tup[2]}.Pack(), p.Value))
		}
		return tx.ClearRange(begin, end)
	})
	require.NoError(t, err)
}

// TestService_Run_MsgIDDedupeLegacyLayout: a log whose dedupe keys are in
// the old, unscoped layout goes on dropping each source's retries of the
// ids it recorded, and records another source's event with such an id.
func TestService_Run_MsgIDDedupeLegacyLayout(t *testing.T) {
	h := newHarness(t, Config{}, bus.Config{DuplicateWindow: 100 * time.Millisecond})
	h.logPastWindow("codi-state", "state", "state-1")
	ack := h.logPastWindow("agent-1", "x", "a-1")
	h.waitCommitted(ack.Sequence)
	require.NoError(t, h.stop())
	toLegacyMsgIDs(t, h.store)
	h.start()
	require.True(t, h.svc.legacyMsgIDs)

	h.logPastWindow("codi-state", "state", "state-1") // a retry: dropped
	h.logPastWindow("agent-1", "x", "a-1")            // a retry: dropped
	h.logPastWindow("agent-9", "note", "state-1")     // another source: kept
	h.logPastWindow("agent-9", "note", "state-1")     // its retry: dropped (new layout)
	ack = h.logPastWindow("codi-state", "state", "state-2")
	h.waitCommitted(ack.Sequence)

	recs := h.wholeLog(4)
	assert.Equal(t, []string{"codi-state/state-1", "agent-1/a-1", "agent-9/state-1", "codi-state/state-2"}, msgIDsOf(recs))
}

// The dedupe key keeps its layout, ("audit-msgid-src", source, id) with a
// long id as its SHA-256, built in one allocation (the intake builds one
// per event; packing a kv.Tuple took four).
func TestMsgIDKey_Layout(t *testing.T) {
	long := strings.Repeat("x", maxMsgIDKey+1)
	sum := sha256.Sum256([]byte(long))
	tests := []struct {
		name, source, id string
		want             kv.Tuple
	}{
		{"plain", "agent-3", "e-1", kv.Tuple{nsMsgID, "agent-3", "e-1"}},
		{"NUL bytes", "a\x00b", "\x00id\x00", kv.Tuple{nsMsgID, "a\x00b", "\x00id\x00"}},
		{"longest kept", "agent-3", long[:maxMsgIDKey], kv.Tuple{nsMsgID, "agent-3", long[:maxMsgIDKey]}},
		{"long id hashed", "agent-3", long, kv.Tuple{nsMsgID, "agent-3", sum[:]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want.Pack(), msgIDKey(tt.source, tt.id))
		})
	}
	assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() { msgIDKey("agent-3", "e-12345") }))
}

// An event with a Nats-Msg-Id costs the intake one allocation, its record
// body and dedupe key sharing it (two before), and they are the ones
// built apart, for ids kept as they are and for hashed ones.
func TestNewEvent_BodyAndKeyOneAllocation(t *testing.T) {
	at := time.Unix(1700000000, 5)
	payload := []byte(`{"a":1}`)
	for _, id := range []string{"e-12345", strings.Repeat("x", maxMsgIDKey+1)} {
		hdr := nats.Header{jetstream.MsgIDHeader: []string{id}}
		e := newEvent(3, at, "codi.audit.log.agent-3.file", hdr, payload)
		assert.Equal(t, encodeBody("codi.audit.log.agent-3.file", "agent-3", "file", id, payload), e.body)
		assert.Equal(t, msgIDKey("agent-3", id), e.msgKey)
		assert.Equal(t, len(e.body), cap(e.body), "the key cannot be appended over the body")
	}
	hdr := nats.Header{jetstream.MsgIDHeader: []string{"e-12345"}}
	assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() { newEvent(3, at, "codi.audit.log.agent-3.file", hdr, payload) }))
}
