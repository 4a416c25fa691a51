package bus_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/auth"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// authBus runs a bus with auth on and returns it with its authority.
func authBus(t *testing.T) (*bus.Bus, *auth.Authority) {
	t.Helper()
	a, err := auth.Open(filepath.Join(t.TempDir(), "auth"))
	require.NoError(t, err)
	return bustest.Run(t, bus.Config{Auth: a}), a
}

// creds issues a credentials file for id with role in t.TempDir().
func creds(t *testing.T, a *auth.Authority, id string, role auth.Role) string {
	t.Helper()
	data, _, err := bus.Issue(a, id, role)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), id+".creds")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	return file
}

// violations collects the permission violations a connection is told of.
type violations struct {
	mu   sync.Mutex
	errs []error
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	v.errs = append(v.errs, err)
	v.mu.Unlock()
}

func (v *violations) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, err := range v.errs {
		if errors.Is(err, nats.ErrPermissionViolation) {
			n++
		}
	}
	return n
}

func TestAuth_AgentSendsOnlyAsItself(t *testing.T) {
	b, a := authBus(t)
	var v violations
	nc := bustest.Connect(t, b, bus.Credentials(creds(t, a, "agent-1", auth.RoleAgent)), nats.ErrorHandler(v.handler))
	me, err := bus.NewAgent("agent-1", nc)
	require.NoError(t, err)
	rc := bustest.Connect(t, b, bus.Credentials(creds(t, a, "agent-2", auth.RoleAgent)))
	other, err := bus.NewAgent("agent-2", rc)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = me.Send(ctx, "agent-2", "task.assign", []byte("x"))
	require.NoError(t, err)

	// Impersonation: agent-1 publishing as agent-3.
	require.NoError(t, nc.Publish("codi.msg.agent-2.agent-3.task", []byte("forged")))
	require.Eventually(t, func() bool { return v.count() == 1 }, 5*time.Second, 10*time.Millisecond)

	var got []bus.Message
	err = other.Receive(ctx, bus.ReceiveConfig{UntilIdle: true}, func(_ context.Context, m bus.Message) error {
		got = append(got, m)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "agent-1", got[0].From)
}

func TestAuth_NoCredentialsRefused(t *testing.T) {
	b, _ := authBus(t)
	_, err := nats.Connect(b.ClientURL(), nats.MaxReconnects(0))
	require.ErrorIs(t, err, nats.ErrAuthorization)
}
