//go:build !fdb

package server_test

import (
	"context"
	"testing"

	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/server"
	"github.com/stretchr/testify/require"
)

func TestStart_FDBWithoutTag(t *testing.T) {
	_, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1", Store: server.StoreFDB}, bustest.Logger(t))
	require.ErrorContains(t, err, "built without FoundationDB support")
}
