package bus_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 11, input 3: a stream whose files failed a write on a full disk is
// reported, and writes again by itself once the disk has room: its messages
// from before are still there.
func TestBus_FullDisk_StreamRecovers(t *testing.T) {
	dir := proctest.SmallDisk(t, 64*mib)
	b := bustest.Run(t, bus.Config{DataDir: dir})
	js := b.JetStream()
	ctx := context.Background()
	publish := func(n int) error {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "codi.audit.log.agent-1.note", make([]byte, n))
		return err
	}
	require.NoError(t, publish(10))
	assert.Empty(t, b.StorageProblems())

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	require.NoError(t, err)
	for err == nil {
		_, err = f.Write(make([]byte, 64<<10))
	}
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.NoError(t, f.Close())

	require.Error(t, publish(64<<10), "not stored, not acknowledged")
	require.Eventually(t, func() bool { return len(b.StorageProblems()) > 0 }, 10*time.Second, 10*time.Millisecond)
	assert.Contains(t, b.StorageProblems()[0], "stream CODI_AUDIT cannot write")
	assert.Contains(t, b.StorageProblems()[0], "no space left on device")
	assert.Contains(t, b.StorageProblems()[0], "reloaded once the disk has 4 MiB free")
	require.Error(t, publish(10), "still unwritable while the disk is full")

	require.NoError(t, os.Remove(filler))
	require.Eventually(t, func() bool { return publish(64<<10) == nil }, 30*time.Second, 10*time.Millisecond)
	assert.Empty(t, b.StorageProblems())
	s, err := js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), s.CachedInfo().State.Msgs, "the first message and the one after recovery")
}
