package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestServer_Readiness(t *testing.T) {
	s, err := Start(context.Background(), Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1"}, zerolog.Nop())
	require.NoError(t, err)
	ctx := context.Background()
	rd := s.Readiness(ctx)
	assert.True(t, rd.Ready, "%v", rd.Problems)
	assert.Equal(t, "running", rd.Phase)
	assert.Empty(t, rd.Problems)

	// Behind, within the bound: ready. Behind past it: not, with numbers.
	js := s.Bus().JetStream()
	for range 3 {
		_, err := js.Publish(ctx, "codi.audit.log.agent-1.note", []byte(`{}`))
		require.NoError(t, err)
	}
	st, err := js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	assert.Empty(t, s.lagProblem(ctx, st, audit.ServiceName, audit.ConsumerName, 0))
	s.cfg.ReadyMaxLag = time.Nanosecond
	p := s.lagProblem(ctx, st, audit.ServiceName, audit.ConsumerName, 0)
	assert.Contains(t, p, "codi-audit is 3 messages behind")
	assert.Contains(t, p, "limit 1ns")
	assert.Empty(t, s.lagProblem(ctx, st, audit.ServiceName, audit.ConsumerName, 3), "caught up")
	require.NoError(t, st.DeleteMsg(ctx, 2))
	assert.Empty(t, s.lagProblem(ctx, st, audit.ServiceName, audit.ConsumerName, 1), "a deleted message is no lag")
	assert.Contains(t, s.lagProblem(ctx, st, audit.ServiceName, "nobody", 0), "consumer nobody")

	// A stream gone: named.
	require.NoError(t, js.DeleteStream(ctx, bus.StreamMsg))
	rd = s.Readiness(ctx)
	assert.False(t, rd.Ready)
	assert.Contains(t, rd.Problems[0], "stream CODI_MSG")

	require.NoError(t, s.Stop())
	rd = s.Readiness(ctx)
	assert.Equal(t, "stopping", rd.Phase)
	assert.Contains(t, rd.Problems, "codi2 is stopping")
	assert.Contains(t, rd.Problems, "not connected to NATS")
}

// A (nearly) full disk under the data directory makes the server not ready,
// saying so, whether or not a write has failed yet.
func TestServer_Readiness_FullDisk(t *testing.T) {
	dir := proctest.SmallDisk(t, 64<<20)
	s, err := Start(context.Background(), Config{DataDir: dir, NATSListen: "127.0.0.1:-1"}, zerolog.Nop())
	require.NoError(t, err)
	defer func() { assert.NoError(t, s.Stop()) }()
	require.True(t, s.Readiness(context.Background()).Ready)

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	require.NoError(t, err)
	for err == nil {
		_, err = f.Write(make([]byte, 64<<10))
	}
	require.NoError(t, f.Close())
	rd := s.Readiness(context.Background())
	assert.False(t, rd.Ready)
	assert.Contains(t, strings.Join(rd.Problems, "\n"), "the disk holding "+dir+" has ")
	assert.Contains(t, strings.Join(rd.Problems, "\n"), " free (less than 4 MiB): writes fail or are about to")

	require.NoError(t, os.Remove(filler))
	assert.True(t, s.Readiness(context.Background()).Ready)
	assert.Contains(t, diskProblem(filepath.Join(dir, "missing")), "no such file")
}
