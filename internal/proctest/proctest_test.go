package proctest_test

import (
	"net/http"
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
