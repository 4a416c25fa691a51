//go:build fdb

package server_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/server"
	"github.com/codi2/codi2/state"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServer_FDB runs both services on FoundationDB: a claim and an audit
// event survive a restart of the whole server on the same database. It needs
// FDB_CLUSTER_FILE and owns the database's keys for its duration.
func TestServer_FDB(t *testing.T) {
	cluster := os.Getenv("FDB_CLUSTER_FILE")
	if cluster == "" {
		t.Skip("FDB_CLUSTER_FILE is not set")
	}
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, NATSListen: "127.0.0.1:-1", Store: server.StoreFDB, FDBClusterFile: cluster}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	s, err := server.Start(ctx, cfg, bustest.Logger(t))
	require.NoError(t, err)
	nc := bustest.Connect(t, s.Bus())
	sc, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	claimID := "fdb-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	rec, err := sc.Claim(ctx, "task", claimID, time.Hour, map[string]any{"status": "in_progress"})
	require.NoError(t, err)
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	ack, err := ac.LogAndWait(ctx, "agent-1", "fdb", []byte(`{"claim":"`+claimID+`"}`))
	require.NoError(t, err)
	nc.Close()
	require.NoError(t, s.Stop())

	s, err = server.Start(ctx, cfg, bustest.Logger(t))
	require.NoError(t, err)
	defer func() { assert.NoError(t, s.Stop()) }()
	nc = bustest.Connect(t, s.Bus())
	sc, err = state.NewClient(nc, "agent-2")
	require.NoError(t, err)
	got, err := sc.Get(ctx, "task", claimID, 0)
	require.NoError(t, err)
	assert.Equal(t, rec.Rev, got.Rev)
	_, err = sc.Claim(ctx, "task", claimID, time.Hour, nil)
	require.ErrorIs(t, err, state.ErrConflict, "the claim survived the restart")
	ac, err = audit.NewClient(nc)
	require.NoError(t, err)
	res, err := ac.Verify(ctx, audit.VerifyRequest{})
	require.NoError(t, err)
	assert.True(t, res.OK)
	assert.NotZero(t, ack.Sequence)
}
