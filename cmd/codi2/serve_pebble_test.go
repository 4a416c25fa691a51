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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs proctest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data", dir, "--store", "pebble", "--nats-listen", "127.0.0.1:-1", "--http-listen", "127.0.0.1:0", "--log-format", "json"}, &proctest.Buffer{}, &logs)
	}()
	ready := readyLine(t, &logs, done)
	assert.Equal(t, "pebble", ready["store"])

	nc, err := nats.Connect(ready["nats"].(string))
	require.NoError(t, err)
	defer nc.Close()
	c, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	_, err = c.Apply(actx, "task", "T-1", state.Command{Op: state.OpPut, Fields: map[string]any{"n": 1}})
	require.NoError(t, err)
	assert.DirExists(t, filepath.Join(dir, "pebble"))
	assert.NoFileExists(t, filepath.Join(dir, "state.db"))
	assert.NoFileExists(t, filepath.Join(dir, "audit.db"))

	cancel()
	select {
	case code := <-done:
		assert.Equal(t, 0, code, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	nc.Close()

	// Started again without --store, it takes the pebble store it finds
	// and the record is there.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	var logs2 proctest.Buffer
	done2 := make(chan int, 1)
	go func() {
		done2 <- run(ctx2, []string{"serve", "--data", dir, "--nats-listen", "127.0.0.1:-1", "--http-listen", "127.0.0.1:0", "--log-format", "json"}, &proctest.Buffer{}, &logs2)
	}()
	ready = readyLine(t, &logs2, done2)
	assert.Equal(t, "pebble", ready["store"])
	nc2, err := nats.Connect(ready["nats"].(string))
	require.NoError(t, err)
	defer nc2.Close()
	c2, err := state.NewClient(nc2, "agent-1")
	require.NoError(t, err)
	gctx, gcancel := context.WithTimeout(ctx2, 10*time.Second)
	defer gcancel()
	rec, err := c2.Get(gctx, "task", "T-1", 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rec.Rev)
	cancel2()
	select {
	case code := <-done2:
		assert.Equal(t, 0, code, logs2.String())
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
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
