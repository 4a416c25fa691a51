// Package servertest starts a whole codi2 server (embedded NATS, state and
// audit services, the inbox service) in-process for tests, optionally with
// auth, and issues credentials for it.
package servertest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/internal/server"
	"github.com/stretchr/testify/require"
)

// Start runs a server on a random port and a temporary data directory,
// with auth when withAuth is set, and stops it when the test ends.
func Start(t testing.TB, withAuth bool) *server.Server {
	t.Helper()
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1", Auth: withAuth},
		bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	return s
}

// Creds issues credentials for id with role on s (started with auth) and
// returns the path of the credentials file, in a temporary directory.
func Creds(t testing.TB, s *server.Server, id string, role auth.Role) string {
	t.Helper()
	a, err := auth.Open(filepath.Join(s.DataDir(), "auth"))
	require.NoError(t, err)
	data, _, err := bus.Issue(a, id, role)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), id+".creds")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	return file
}
