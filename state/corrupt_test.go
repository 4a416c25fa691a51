package state_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/state"
)

// reopenStore closes the env's bbolt store, lets damage change its file
// on disk, and opens it again as the env's store.
func (e *env) reopenStore(damage func(path string)) {
	e.t.Helper()
	path := e.store.(*boltkv.Store).Path()
	require.NoError(e.t, e.store.Close())
	damage(path)
	s, err := boltkv.Open(path, boltkv.Options{})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = s.Close() })
	e.store = s
}

// flipAll flips one bit of every occurrence of marker in the file.
func flipAll(t *testing.T, path string, marker []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	n := 0
	for i := bytes.Index(data, marker); i >= 0; {
		data[i+1] ^= 0x01
		n++
		j := bytes.Index(data[i+1:], marker)
		if j < 0 {
			break
		}
		i += 1 + j
	}
	require.Positive(t, n)
	require.NoError(t, os.WriteFile(path, data, 0o600))
}

// TestService_CorruptRecord is issue 11's input 7 for a record: one flipped
// byte in a stored record is not served as truth. Its get fails with an
// error naming it, a command on it is rejected with reason corrupt, and the
// other records are served and changed as before.
func TestService_CorruptRecord(t *testing.T) {
	e := newEnv(t)
	r := e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)
	_, err := c.Apply(ctx, "task", "t1", state.Command{Op: state.OpPut, Fields: map[string]any{"marker": "zqzqzqzq"}})
	require.NoError(t, err)
	_, err = c.Apply(ctx, "task", "t2", state.Command{Op: state.OpPut, Fields: map[string]any{"x": 1}})
	require.NoError(t, err)
	r.stop(t)
	e.reopenStore(func(path string) { flipAll(t, path, []byte("zqzqzqzq")) })
	e.start(fastConfig())

	_, err = c.Get(ctx, "task", "t1", 0)
	require.ErrorIs(t, err, state.ErrRemote)
	assert.ErrorContains(t, err, "task/t1")
	assert.ErrorContains(t, err, "checksum")
	_, err = c.List(ctx, "task", state.ListOptions{})
	assert.ErrorContains(t, err, "task/t1")
	_, err = c.Apply(ctx, "task", "t1", state.Command{Op: state.OpMerge, Fields: map[string]any{"y": 1}})
	require.ErrorIs(t, err, state.ErrCorrupt)
	assert.ErrorContains(t, err, "task/t1")

	rec, err := c.Get(ctx, "task", "t2", 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rec.Rev)
	_, err = c.Apply(ctx, "task", "t2", state.Command{Op: state.OpMerge, Fields: map[string]any{"y": 1}})
	require.NoError(t, err)
}

// TestService_DamagedPage is issue 11's input 7 for a page: a bbolt page
// damaged on disk under the running service fails the requests that read
// it with an error, and the service (and the process) go on serving the
// rest.
func TestService_DamagedPage(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	const n = 2000
	subj := func(i int) string { return cmdSubject(t, "task", fmt.Sprintf("t%04d", i), "agent-1") }
	var last uint64
	for i := range n {
		last = e.publish(subj(i), `{"op":"put","fields":{"pad":"................................................................"}}`)
	}
	e.waitApplied(last)

	path := e.store.(*boltkv.Store).Path()
	key := kv.Tuple{"state", "task", "t1500"}.Pack()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	ps, damaged := os.Getpagesize(), 0
	for off := 2 * ps; off+ps <= len(data); off += ps {
		page := data[off : off+ps]
		if binary.LittleEndian.Uint16(page[8:]) == 0x02 && bytes.Contains(page, key) {
			_, err := f.WriteAt([]byte{0x7f, 0}, int64(off+8)) // an invalid page type
			require.NoError(t, err)
			damaged++
		}
	}
	require.Positive(t, damaged)

	c := e.client("observer")
	_, err = c.Get(ctxT(t), "task", "t1500", 0)
	require.ErrorIs(t, err, state.ErrRemote)
	assert.ErrorContains(t, err, "corrupt")
	rec, err := c.Get(ctxT(t), "task", "t0001", 0)
	require.NoError(t, err, "records on sound pages are served")
	assert.Equal(t, uint64(1), rec.Rev)
	seq, err := c.Status(ctxT(t))
	require.NoError(t, err)
	assert.Equal(t, last, seq)

	// A command on the damaged record is rejected, naming the damage; the
	// next ones are applied.
	w := e.client("agent-1")
	_, err = w.Apply(ctxT(t), "task", "t1500", state.Command{Op: state.OpMerge, Fields: map[string]any{"x": 1}})
	require.ErrorIs(t, err, state.ErrCorrupt)
	ev, err := w.Apply(ctxT(t), "task", "t0001", state.Command{Op: state.OpMerge, Fields: map[string]any{"x": 1}})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), ev.Rev)
}
