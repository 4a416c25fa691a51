package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWatermarks(t *testing.T) {
	b := bustest.Run(t)
	nc := bustest.Connect(t, b)
	w, err := followWatermarks(nc, "test.committed")
	require.NoError(t, err)
	defer w.close()

	assert.Zero(t, w.current())
	_, ok := w.committedAt(1)
	assert.False(t, ok)

	require.NoError(t, nc.Publish("test.committed", []byte("not json")))
	require.NoError(t, nc.Publish("test.committed", []byte(`{"stream_seq":5}`)))
	at, err := w.wait(context.Background(), 3)
	require.NoError(t, err)
	assert.Equal(t, uint64(5), w.current())

	// Going back or standing still is ignored.
	w.advance(4, time.Now())
	w.advance(5, time.Now())
	assert.Equal(t, uint64(5), w.current())
	got, ok := w.committedAt(5)
	require.True(t, ok)
	assert.Equal(t, at, got)

	// A wait is woken by a later watermark.
	done := make(chan error, 1)
	go func() {
		_, err := w.wait(context.Background(), 7)
		done <- err
	}()
	w.advance(8, time.Now())
	require.NoError(t, <-done)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = w.wait(ctx, 100)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "watermark 100 (at 8)")

	var nilW *watermarks
	nilW.close() // no-op
}

func TestRequest(t *testing.T) {
	b := bustest.Run(t)
	nc := bustest.Connect(t, b)
	sub, err := nc.Subscribe("test.svc.>", func(m *nats.Msg) {
		switch m.Subject {
		case "test.svc.fail":
			r := nats.NewMsg(m.Reply)
			r.Header.Set(bus.ErrorHeader, "nope")
			r.Header.Set(bus.ErrorCodeHeader, "400")
			_ = m.RespondMsg(r)
		case "test.svc.junk":
			_ = m.Respond([]byte("junk"))
		default:
			_ = m.Respond([]byte(`{"stream_seq":9,"seq":3}`))
		}
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()
	ctx := context.Background()

	wm, err := status(ctx, nc, "test.svc.ok", time.Second)
	require.NoError(t, err)
	assert.Equal(t, watermark{StreamSeq: 9, Seq: 3}, wm)

	_, err = status(ctx, nc, "test.svc.fail", time.Second)
	require.ErrorIs(t, err, errService)
	assert.Contains(t, err.Error(), "400 nope")

	_, err = status(ctx, nc, "test.svc.junk", time.Second)
	require.Error(t, err)

	_, err = request(ctx, nc, "test.nobody", nil)
	require.ErrorIs(t, err, nats.ErrNoResponders)

	require.NoError(t, nc.Drain())
	_, err = followWatermarks(nc, "x")
	require.Error(t, err)
}

func TestStamp(t *testing.T) {
	s := stamp(4)
	assert.Len(t, s, 8, "room for the time at least")
	assert.Len(t, stamp(100), 100)
	assert.GreaterOrEqual(t, sinceStamp(s), time.Duration(0))
	assert.Zero(t, sinceStamp([]byte("short")))
	p := auditPayload(7, 80)
	assert.Contains(t, string(p), `"n":7`)
	assert.Len(t, p, 80)
}

func TestMachine(t *testing.T) {
	m, err := machine(t.TempDir())
	require.NoError(t, err)
	assert.Positive(t, m.CPUs)
	assert.Positive(t, m.FsyncP99)

	_, err = machine(filepath.Join(t.TempDir(), "missing"))
	require.Error(t, err)

	dir := t.TempDir()
	assert.Empty(t, cpuModel(filepath.Join(dir, "missing")))
	assert.Empty(t, loadAvg(filepath.Join(dir, "missing")))
	f := filepath.Join(dir, "cpuinfo")
	require.NoError(t, os.WriteFile(f, []byte("processor : 0\nmodel name\t: Test CPU @ 1GHz\n"), 0o600))
	assert.Equal(t, "Test CPU @ 1GHz", cpuModel(f))
	require.NoError(t, os.WriteFile(f, []byte("processor : 0\n"), 0o600))
	assert.Empty(t, cpuModel(f))
	require.NoError(t, os.WriteFile(f, []byte("0.42 0.30 0.20 1/100 123\n"), 0o600))
	assert.Equal(t, "0.42", loadAvg(f))
	require.NoError(t, os.WriteFile(f, nil, 0o600))
	assert.Empty(t, loadAvg(f))
}

func TestStartEmbedded_Errors(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"state.db", "audit.db"} {
		t.Run(name+" unusable", func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o700))
			_, err := startEmbedded(ctx, dir, "", "127.0.0.1:-1", bustest.Logger(t))
			require.Error(t, err)
			assert.Contains(t, err.Error(), name[:len(name)-3])
		})
	}
	t.Run("bad listen address", func(t *testing.T) {
		_, err := startEmbedded(ctx, t.TempDir(), "", "127.0.0.1:x", bustest.Logger(t))
		require.ErrorIs(t, err, bus.ErrConfig)
	})
}
