package audit

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClient_LogAsync(t *testing.T) {
	h := newHarness(t, Config{})
	f, err := h.client.LogAsync("v1-import", "v1", []byte(`{"a":1}`), WithTokens("TASK_ACK"), WithMsgID("v1-x-0"))
	require.NoError(t, err)
	select {
	case ack := <-f.Ok():
		h.waitCommitted(ack.Sequence)
	case err := <-f.Err():
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("no PubAck")
	}
	recs := h.all(Query{})
	require.Len(t, recs, 1)
	assert.Equal(t, "codi.audit.log.v1-import.v1.TASK_ACK", recs[0].Subject)
	assert.Equal(t, "v1-x-0", recs[0].MsgID)

	_, err = h.client.LogAsync("a.b", "v1", nil)
	assert.ErrorIs(t, err, ErrBadRequest)
	_, err = h.client.LogAsync("a", "v1", nil, WithTokens("p q"))
	assert.ErrorIs(t, err, ErrBadRequest)
}
