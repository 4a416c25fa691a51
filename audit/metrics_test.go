package audit

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// countAppends counts what the service reports.
type countAppends struct{ records, commits atomic.Int64 }

func (m *countAppends) Appended(records int, took time.Duration) {
	m.records.Add(int64(records))
	m.commits.Add(1)
}

func TestService_Metrics(t *testing.T) {
	m := &countAppends{}
	h := newHarness(t, Config{Metrics: m})
	acks := h.logN(5, "agent-1", "note")
	h.waitCommitted(acks[len(acks)-1].Sequence)
	require.Eventually(t, func() bool { return m.records.Load() == 5 }, 10*time.Second, time.Millisecond)
	require.GreaterOrEqual(t, m.commits.Load(), int64(1))
}
