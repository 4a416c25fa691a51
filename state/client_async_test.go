package state_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/state"
)

func TestClient_PublishAsync(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("v1-import")
	cmd := state.Command{Op: state.OpMerge, Fields: map[string]any{"status": "done"}}
	f, err := c.PublishAsync("task", "T-1", cmd, "v1-x-0")
	require.NoError(t, err)
	var seq uint64
	select {
	case ack := <-f.Ok():
		seq = ack.Sequence
	case err := <-f.Err():
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("no PubAck")
	}
	// The same id again is stored once (JetStream's duplicate window).
	f, err = c.PublishAsync("task", "T-1", cmd, "v1-x-0")
	require.NoError(t, err)
	ack := <-f.Ok()
	assert.True(t, ack.Duplicate)
	rec, err := c.Get(ctxT(t), "task", "T-1", seq)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rec.Rev)
	assert.Equal(t, "v1-import", rec.UpdatedBy)

	_, err = c.PublishAsync("Task", "T-1", cmd, "")
	assert.ErrorIs(t, err, state.ErrBadRequest)
	_, err = c.PublishAsync("task", "T-1", state.Command{Op: state.OpMerge, Fields: map[string]any{"f": func() {}}}, "")
	assert.ErrorIs(t, err, state.ErrBadRequest)
}

func TestClient_PublishTxnAsync(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("v1-import")
	ops := []state.TxnOp{
		{Kind: "task", ID: "T-1", Command: state.Command{Op: state.OpMerge, Fields: map[string]any{"status": "a"}}},
		{Kind: "task", ID: "T-1", Command: state.Command{Op: state.OpMerge, Fields: map[string]any{"status": "b"}}},
	}
	f, err := c.PublishTxnAsync("v1-x-0-9", ops)
	require.NoError(t, err)
	var seq uint64
	select {
	case ack := <-f.Ok():
		seq = ack.Sequence
	case err := <-f.Err():
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("no PubAck")
	}
	// The same txid again is stored once.
	f, err = c.PublishTxnAsync("v1-x-0-9", ops)
	require.NoError(t, err)
	assert.True(t, (<-f.Ok()).Duplicate)
	rec, err := c.Get(ctxT(t), "task", "T-1", seq)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), rec.Rev, "each operation a change")
	assert.JSONEq(t, `"b"`, string(rec.Fields["status"]))

	_, err = c.PublishTxnAsync("a.b", ops)
	assert.ErrorIs(t, err, state.ErrBadRequest)
	_, err = c.PublishTxnAsync("t", nil)
	assert.ErrorIs(t, err, state.ErrBadRequest)
	_, err = c.PublishTxnAsync("t", []state.TxnOp{{Kind: "task", ID: "x", Command: state.Command{Op: state.OpMerge, Fields: map[string]any{"f": func() {}}}}})
	assert.ErrorIs(t, err, state.ErrBadRequest)
}
