package servertest_test

import (
	"testing"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/internal/servertest"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStartAndCreds(t *testing.T) {
	open := servertest.Start(t, false)
	bustest.Connect(t, open.Bus())

	s := servertest.Start(t, true)
	_, err := nats.Connect(s.Bus().ClientURL(), nats.MaxReconnects(0))
	require.ErrorIs(t, err, nats.ErrAuthorization)
	nc := bustest.Connect(t, s.Bus(), bus.Credentials(servertest.Creds(t, s, "agent-1", auth.RoleAgent)))
	assert.True(t, nc.IsConnected())
}
