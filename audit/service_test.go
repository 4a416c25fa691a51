package audit

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestService_Run_AppendsChain(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(50, "agent-1", "file")
	h.waitCommitted(acks[len(acks)-1].Sequence)

	recs := h.all(Query{})
	require.Len(t, recs, 50)
	assertChain(t, recs, 1, GenesisPrev)
	assert.Equal(t, "agent-1", recs[0].Source)
	assert.Equal(t, "file", recs[0].Category)
	assert.JSONEq(t, `{"i":0}`, string(recs[0].Data))

	res := h.verify(VerifyRequest{})
	assert.True(t, res.OK, "%+v", res)
	assert.Equal(t, uint64(50), res.Count)
	assert.Equal(t, recs[49].Hash, res.Head)

	st, err := h.client.Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, uint64(50), st.Seq)
	assert.Equal(t, uint64(50), st.Count)
}
