package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
)

// `serve --store pebble` keeps both services in DATA/pebble (no bbolt
// file), says so in its ready line, applies a state command and stops
// cleanly.
func TestRun_ServePebble(t *testing.T) {
	dir := t.TempDir()
	ready, stop := serveWith(t, "--data", dir, "--store", "pebble")
	assert.Equal(t, "pebble", ready["store"])
	c := stateClient(t, ready)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Apply(ctx, "task", "T-1", state.Command{Op: state.OpPut, Fields: map[string]any{"n": 1}})
	require.NoError(t, err)
	assert.DirExists(t, filepath.Join(dir, "pebble"))
	assert.NoFileExists(t, filepath.Join(dir, "state.db"))
	assert.NoFileExists(t, filepath.Join(dir, "audit.db"))
	stop() // exits 0

	// Started again without --store, it takes the pebble store it finds
	// and the record is there.
	ready, stop = serveWith(t, "--data", dir)
	assert.Equal(t, "pebble", ready["store"])
	rec, err := stateClient(t, ready).Get(ctx, "task", "T-1", 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rec.Rev)
	stop()
}

// stateClient is agent-1's state client on the server of ready.
func stateClient(t *testing.T, ready map[string]any) *state.Client {
	t.Helper()
	nc, err := nats.Connect(ready["nats"].(string))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	c, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	return c
}

// A data directory of the bolt store refuses --store pebble in one line
// naming its files and exits 1, and the reverse: never an empty store
// started beside the data.
func TestRun_ServeOtherStoreRefused(t *testing.T) {
	tests := []struct {
		name  string
		store string
		have  string
		want  string
	}{
		{"pebble over bolt", "pebble", "state.db", "holds state.db, the bolt store's data"},
		{"bolt over pebble", "bolt", "pebble", "holds pebble, the pebble store's data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.have == "pebble" {
				require.NoError(t, os.Mkdir(filepath.Join(dir, tt.have), 0o755))
			} else {
				require.NoError(t, os.WriteFile(filepath.Join(dir, tt.have), nil, 0o600))
			}
			var stderr proctest.Buffer
			code := run(context.Background(), []string{"serve", "--data", dir, "--store", tt.store,
				"--nats-listen", "127.0.0.1:-1", "--http-listen", "127.0.0.1:0"}, &proctest.Buffer{}, &stderr)
			assert.Equal(t, 1, code)
			assert.Contains(t, stderr.String(), tt.want)
		})
	}
}
