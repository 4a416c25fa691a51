package audit

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus/bustest"
)

func TestClient_LogAndWait_Committed(t *testing.T) {
	h := newHarness(t, Config{})
	for i := range 20 {
		ack, err := h.client.LogAndWait(context.Background(), "agent-1", "file", []byte(`{}`),
			WithTokens("write", "x"), WithHeader("X-Test", "1"), WithMsgID("id-"+itoa(uint64(i))))
		require.NoError(t, err)
		st := h.svc.Status()
		assert.GreaterOrEqual(t, st.StreamSeq, ack.Sequence, "committed when LogAndWait returns")
	}
	recs := h.all(Query{})
	require.Len(t, recs, 20)
	assert.Equal(t, "codi.audit.log.agent-1.file.write.x", recs[0].Subject)
	assert.Equal(t, "id-0", recs[0].MsgID)
	assert.NoError(t, h.client.Close())
	assert.NoError(t, h.client.Close(), "Close is idempotent")
}

// TestClient_WaitCommitted_PollsStatus waits on a seq committed before the
// client subscribed: no watermark message comes, status answers.
func TestClient_WaitCommitted_PollsStatus(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(3, "agent-1", "x")
	h.waitCommitted(acks[2].Sequence)
	c, err := NewClient(bustest.Connect(t, h.bus))
	require.NoError(t, err)
	defer c.Close()
	w, err := c.WaitCommitted(context.Background(), acks[2].Sequence)
	require.NoError(t, err)
	assert.Equal(t, Watermark{StreamSeq: 3, Seq: 3}, w)

	// A seq nobody published: the wait ends with the context.
	ctx, cancel := context.WithTimeout(context.Background(), 3*statusPoll)
	defer cancel()
	_, err = c.WaitCommitted(ctx, 100)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

// A wait whose connection closes ends with nats.ErrConnectionClosed, not
// never (a breaker's input: `codi2 import v1` hung for good in its final
// WaitCommitted once the server it imported into was stopped).
func TestClient_WaitCommitted_ConnectionClosed(t *testing.T) {
	h := newHarness(t, Config{})
	nc := bustest.Connect(t, h.bus)
	c, err := NewClient(nc)
	require.NoError(t, err)
	defer c.Close()
	// Subscribed to the watermark first, so that the wait below is under
	// way when the connection closes.
	short, cancel := context.WithTimeout(context.Background(), statusPoll)
	defer cancel()
	_, err = c.WaitCommitted(short, 100)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	done := make(chan error, 1)
	go func() {
		_, err := c.WaitCommitted(context.Background(), 100)
		done <- err
	}()
	nc.Close()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, nats.ErrConnectionClosed)
		assert.ErrorContains(t, err, "wait for stream_seq 100")
	case <-time.After(10 * time.Second):
		t.Fatal("WaitCommitted did not return after its connection closed")
	}
}

func TestClient_Log_Errors(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	tests := []struct {
		name             string
		source, category string
		opts             []LogOption
	}{
		{name: "bad source", source: "a.b", category: "x"},
		{name: "empty category", source: "a", category: ""},
		{name: "bad token", source: "a", category: "x", opts: []LogOption{WithTokens("p q")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.Log(ctx, tt.source, tt.category, nil, tt.opts...)
			assert.ErrorIs(t, err, ErrBadRequest)
			_, err = h.client.LogAndWait(ctx, tt.source, tt.category, nil, tt.opts...)
			assert.ErrorIs(t, err, ErrBadRequest)
		})
	}
	_, err := NewClient(nil)
	assert.ErrorIs(t, err, ErrBadRequest)
}

func TestClient_Requests_NoService(t *testing.T) {
	h := newHarness(t, Config{})
	require.NoError(t, h.stop())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := h.client.Status(ctx)
	assert.Error(t, err)
	_, err = h.client.Verify(ctx, VerifyRequest{})
	assert.Error(t, err)
	_, err = h.client.Query(ctx, Query{})
	assert.Error(t, err)
	// Publishing still works: the stream stores it for the next run.
	ack, err := h.client.LogAndWait(ctx, "agent-1", "x", nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotNil(t, ack)
	h.start()
	_, err = h.client.WaitCommitted(context.Background(), ack.Sequence)
	assert.NoError(t, err)
}
