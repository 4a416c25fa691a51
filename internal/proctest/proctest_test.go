package proctest_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/proctest"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStart_StopAndKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := proctest.Build(t)
	srv := proctest.Start(t, bin, t.TempDir(), 0)
	nc, err := nats.Connect(srv.URL)
	require.NoError(t, err)
	nc.Close()
	assert.Contains(t, srv.Logs(), srv.DataDir)
	assert.Equal(t, 0, srv.Stop(10*time.Second), "SIGTERM exits 0")
	srv.Kill() // no-op once exited

	srv = proctest.Start(t, bin, srv.DataDir, 0)
	srv.Kill()
	_, err = http.Get("http://" + srv.URL[len("nats://"):])
	assert.Error(t, err, "killed server answers nothing")
}

func TestServer_KillUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := proctest.Start(t, proctest.Build(t), t.TempDir(), 0)
	url := srv.URL
	var flushed atomic.Int64
	var cycles []int
	var mu sync.Mutex
	load := func(ctx context.Context, cycle int) {
		mu.Lock()
		cycles = append(cycles, cycle)
		mu.Unlock()
		nc, err := nats.Connect(url, nats.NoReconnect())
		if err != nil {
			return
		}
		defer nc.Close()
		for ctx.Err() == nil {
			if nc.Publish("codi.load", []byte("x")) != nil || nc.Flush() != nil {
				return // killed
			}
			flushed.Add(1)
		}
	}
	watcher := srv.Connect(t) // reconnects across the kills
	srv = srv.KillUnderLoad(t, 2, 200, func() int { return int(flushed.Load()) }, load, load)
	assert.GreaterOrEqual(t, flushed.Load(), int64(400))
	assert.ElementsMatch(t, []int{0, 0, 1, 1}, cycles, "every load runs once per cycle")
	assert.Equal(t, url, srv.URL, "restarted on the same port")
	nc, err := nats.Connect(srv.URL)
	require.NoError(t, err, "the restarted server runs")
	nc.Close()
	require.Eventually(t, func() bool { return watcher.IsConnected() && watcher.Flush() == nil },
		10*time.Second, 10*time.Millisecond, "Connect's client is back")
}

func TestServer_RestartRunHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := proctest.Build(t)
	dir := proctest.SmallDisk(t, 64<<20)
	srv := proctest.Start(t, bin, dir, 0)
	assert.Positive(t, srv.PID())
	resp, err := http.Get(srv.HTTP(t) + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	pid := srv.PID()
	srv = srv.Restart(t)
	assert.NotEqual(t, pid, srv.PID(), "a new process")
	assert.Contains(t, srv.Logs(), dir)

	code, out := proctest.Run(t, bin, "version")
	assert.Equal(t, 0, code)
	assert.Contains(t, out, "codi2 ")
	code, out = proctest.Run(t, bin, "no-such-command")
	assert.NotZero(t, code)
	assert.Contains(t, out, "unknown command")
}
