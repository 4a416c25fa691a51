package auth

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The operator JWT is the same at every call, across seconds and reopens:
// nats-server refuses to reload a configuration whose operator changed, so
// server-config after a revoke must give the one the server runs with.
func TestAuthority_OperatorJWT_Stable(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(dir)
	require.NoError(t, err)
	first, err := a.OperatorJWT()
	require.NoError(t, err)
	time.Sleep(1100 * time.Millisecond) // a JWT's issue time has whole seconds
	b, err := Open(dir)
	require.NoError(t, err)
	again, err := b.OperatorJWT()
	require.NoError(t, err)
	assert.Equal(t, first, again)
}
