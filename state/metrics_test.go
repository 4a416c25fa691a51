package state_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/state"
)

// countMetrics records what the service reports.
type countMetrics struct {
	mu       sync.Mutex
	commands int
	batches  int
	outcomes map[string]int
}

func (m *countMetrics) Committed(commands int, took time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commands += commands
	m.batches++
}

func (m *countMetrics) Outcome(op state.Op, status state.Status, reason state.Reason) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outcomes[string(op)+"/"+string(status)+"/"+string(reason)]++
}

func (m *countMetrics) get(key string) (int, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.outcomes[key], m.commands
}

func TestService_Metrics(t *testing.T) {
	e := newEnv(t)
	m := &countMetrics{outcomes: map[string]int{}}
	cfg := fastConfig()
	cfg.Metrics = m
	e.start(cfg)
	c := e.client("agent-1")
	_, err := c.Apply(ctxT(t), "task", "T-1", state.Command{Op: state.OpPut, Fields: map[string]any{}})
	require.NoError(t, err)
	_, err = c.Apply(ctxT(t), "task", "T-1", state.Command{Op: state.OpPut, Fields: map[string]any{}, ExpectRev: state.Expect(0)})
	require.ErrorIs(t, err, state.ErrConflict)
	_, err = c.Apply(ctxT(t), "task", "L-1", state.Command{Op: state.OpPut, Fields: map[string]any{}, TTL: 20 * time.Millisecond})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n, _ := m.get("expire/applied/")
		return n == 1
	}, 10*time.Second, 5*time.Millisecond)
	applied, commands := m.get("put/applied/")
	assert.Equal(t, 2, applied)
	assert.Equal(t, 3, commands)
	conflicts, _ := m.get("put/rejected/conflict")
	assert.Equal(t, 1, conflicts)
}
