package bus_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStart_CreatesStreams(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	want := map[string]string{bus.StreamMsg: "codi.msg.>", bus.StreamState: "codi.state.cmd.>", bus.StreamAudit: "codi.audit.log.>"}
	for name, subj := range want {
		s, err := b.JetStream().Stream(ctx, name)
		require.NoError(t, err, name)
		cfg := s.CachedInfo().Config
		assert.Equal(t, []string{subj}, cfg.Subjects)
		assert.Equal(t, jetstream.FileStorage, cfg.Storage)
		assert.Equal(t, bus.DefaultDuplicateWindow, cfg.Duplicates)
		assert.Equal(t, int32(bus.DefaultMaxPayload), cfg.MaxMsgSize)
	}
	assert.True(t, b.Embedded())
	assert.NotNil(t, b.Server())
	assert.Equal(t, "codi2", b.Config().ServerName)
}

func TestEnsureStreams_Idempotent(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	cfg := b.Config()
	require.NoError(t, bus.EnsureStreams(ctx, b.JetStream(), cfg))
	cfg.MsgMaxAge = time.Hour
	require.NoError(t, bus.EnsureStreams(ctx, b.JetStream(), cfg), "an update to the limits applies")
	s, err := b.JetStream().Stream(ctx, bus.StreamMsg)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, s.CachedInfo().Config.MaxAge)

	ctx, cancel := context.WithCancel(ctx)
	cancel()
	require.Error(t, bus.EnsureStreams(ctx, b.JetStream(), cfg))
}

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     bus.Config
		wantErr error
	}{
		{"defaults", bus.Config{DataDir: "x"}, nil},
		{"url needs no dir", bus.Config{URL: "nats://127.0.0.1:4222"}, nil},
		{"no dir", bus.Config{}, bus.ErrConfig},
		{"bad listen", bus.Config{DataDir: "x", Listen: "nohost"}, bus.ErrConfig},
		{"bad port", bus.Config{DataDir: "x", Listen: "127.0.0.1:http"}, bus.ErrConfig},
		{"port range", bus.Config{DataDir: "x", Listen: "127.0.0.1:70000"}, bus.ErrConfig},
		{"payload", bus.Config{DataDir: "x", MaxPayload: -1}, bus.ErrConfig},
		{"replicas", bus.Config{DataDir: "x", Replicas: 7}, bus.ErrConfig},
		{"negative age", bus.Config{DataDir: "x", MsgMaxAge: -time.Second}, bus.ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, bus.DefaultListen, tt.cfg.Listen)
			assert.Equal(t, 1, tt.cfg.Replicas)
		})
	}
}

func TestStart_PortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = bus.Start(context.Background(), bus.Config{DataDir: t.TempDir(), Listen: ln.Addr().String(), StartTimeout: 5 * time.Second}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrStart)
	assert.Contains(t, err.Error(), "address already in use")
}

func TestStart_UnwritableDataDir(t *testing.T) {
	if os.Getuid() == 0 {
		// root ignores permission bits: use a path below a regular file instead.
		file := filepath.Join(t.TempDir(), "file")
		require.NoError(t, os.WriteFile(file, nil, 0o600))
		_, err := bus.Start(context.Background(), bus.Config{DataDir: filepath.Join(file, "data"), Listen: "127.0.0.1:-1"}, bustest.Logger(t))
		require.ErrorIs(t, err, bus.ErrStart)
		assert.Contains(t, err.Error(), "data directory")
		return
	}
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o500))
	_, err := bus.Start(context.Background(), bus.Config{DataDir: dir, Listen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrStart)
}

func TestStart_InvalidConfig(t *testing.T) {
	_, err := bus.Start(context.Background(), bus.Config{}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrConfig)
}

func TestStart_ExternalURL(t *testing.T) {
	embedded := bustest.Run(t)
	b, err := bus.Start(context.Background(), bus.Config{URL: embedded.ClientURL()}, bustest.Logger(t))
	require.NoError(t, err)
	defer b.Close()
	assert.False(t, b.Embedded())
	assert.Nil(t, b.Server())
	assert.Equal(t, embedded.ClientURL(), b.ClientURL())

	// Both see the same streams: a message stored through one is in the other.
	a, err := bus.NewAgent("agent-1", b.Conn())
	require.NoError(t, err)
	ack, err := a.Send(context.Background(), "agent-2", "hello", []byte("x"))
	require.NoError(t, err)
	s, err := embedded.JetStream().Stream(context.Background(), bus.StreamMsg)
	require.NoError(t, err)
	m, err := s.GetMsg(context.Background(), ack.Sequence)
	require.NoError(t, err)
	assert.Equal(t, "codi.msg.agent-2.agent-1.hello", m.Subject)
}

func TestStart_ExternalURLDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = bus.Start(context.Background(), bus.Config{URL: "nats://" + addr}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrStart)
}

func TestBus_Connect_LogsAsyncErrors(t *testing.T) {
	var logs proctest.Buffer
	b, err := bus.Start(context.Background(), bus.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:-1"}, zerolog.New(&logs))
	require.NoError(t, err)
	defer b.Close()
	nc, err := b.Connect("slow")
	require.NoError(t, err)
	defer nc.Close()
	sub, err := nc.Subscribe("codi.test", func(*nats.Msg) { time.Sleep(time.Second) })
	require.NoError(t, err)
	require.NoError(t, sub.SetPendingLimits(1, 1024))
	for range 10 {
		require.NoError(t, nc.Publish("codi.test", []byte("x")))
	}
	require.NoError(t, nc.Flush())
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "slow consumer") }, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, logs.String(), `"subject":"codi.test"`)
}

func TestBus_Close_NoGoroutinesLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	b, err := bus.Start(context.Background(), bus.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:-1"}, zerolog.Nop())
	require.NoError(t, err)
	nc, err := nats.Connect(b.ClientURL())
	require.NoError(t, err)
	a, err := bus.NewAgent("agent-1", nc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	got := make(chan bus.Message, 1)
	_, err = a.Send(ctx, "agent-1", "ping", []byte("x"))
	require.NoError(t, err)
	go func() {
		done <- a.Receive(ctx, bus.ReceiveConfig{}, func(_ context.Context, m bus.Message) error { got <- m; return nil })
	}()
	require.Equal(t, "ping", (<-got).Type)
	cancel()
	require.NoError(t, <-done)
	nc.Close()
	b.Close()
	b.Close() // idempotent
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before }, 10*time.Second, 20*time.Millisecond,
		"goroutines before %d, now %d", before, runtime.NumGoroutine())
}

// TestLastStoredBy finds, for every cut, the last message stored at or
// before it, stepping over deleted messages and an empty range.
func TestLastStoredBy(t *testing.T) {
	b := bustest.Run(t)
	ctx := context.Background()
	js := b.JetStream()
	stream, err := js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	// Messages 1..9, with times read back from the stream.
	times := make([]time.Time, 10)
	for i := 1; i <= 9; i++ {
		_, err := js.Publish(ctx, "codi.audit.log.a.b", nil)
		require.NoError(t, err)
		time.Sleep(2 * time.Millisecond) // distinct stored times
		msg, err := stream.GetMsg(ctx, uint64(i))
		require.NoError(t, err)
		times[i] = msg.Time
	}
	require.NoError(t, stream.DeleteMsg(ctx, 4))
	require.NoError(t, stream.DeleteMsg(ctx, 5))

	cases := []struct {
		name        string
		first, last uint64
		cut         time.Time
		want        uint64
	}{
		{"before every message", 1, 9, times[1].Add(-time.Nanosecond), 0},
		{"at the first", 1, 9, times[1], 1},
		{"at the last", 1, 9, times[9], 9},
		{"after the last", 1, 9, times[9].Add(time.Hour), 9},
		{"in the middle", 1, 9, times[7], 7},
		{"just before a deleted run: 4 and 5 take 6's time", 1, 9, times[3], 3},
		{"at the message after a deleted run", 1, 9, times[6], 6},
		{"first 0 counts as 1", 0, 9, times[2], 2},
		{"a range starting later", 7, 9, times[2], 6},
		{"only deleted messages in range", 4, 5, times[9], 3},
		{"empty range", 1, 0, times[9], 0},
	}
	for _, c := range cases {
		got, err := bus.LastStoredBy(ctx, stream, c.first, c.last, c.cut)
		require.NoError(t, err, c.name)
		assert.Equal(t, c.want, got, c.name)
	}

	for _, c := range []struct {
		seq  uint64
		cut  time.Time
		want bool
	}{
		{0, times[1], false},                      // nothing applied yet
		{3, times[3], false},                      // the message applied
		{3, times[2], true},                       // a message stored later
		{4, times[1], false},                      // deleted: no message to tell
		{10, times[1], false},                     // past the stream's end
		{9, times[9].Add(-time.Nanosecond), true}, // one nanosecond later
		{9, times[9].Add(time.Nanosecond), false}, // stored before
	} {
		got, err := bus.StoredAfter(ctx, stream, c.seq, c.cut)
		require.NoError(t, err)
		assert.Equal(t, c.want, got, "seq %d", c.seq)
	}

	for _, c := range []struct {
		name    string
		applied uint64
		at      time.Time
		want    uint64
		moved   bool
	}{
		{"the stream as applied", 9, times[9], 9, false},
		{"nothing applied yet", 0, time.Time{}, 0, false},
		{"ends below the watermark", 12, times[9], 9, true},
		{"ends below it, time not known: all taken as applied", 12, time.Time{}, 9, true},
		{"a newer message at the watermark", 7, times[6], 6, true},
		{"a newer message, time not known: not noticed", 7, time.Time{}, 7, false},
	} {
		got, moved, err := bus.ResumeAfter(ctx, stream, c.applied, c.at)
		require.NoError(t, err, c.name)
		assert.Equal(t, c.want, got, c.name)
		assert.Equal(t, c.moved, moved, c.name)
	}

	// A stream that is gone is an error naming it.
	require.NoError(t, js.DeleteStream(ctx, bus.StreamAudit))
	_, err = bus.LastStoredBy(ctx, stream, 1, 9, times[9])
	require.ErrorContains(t, err, bus.StreamAudit)
	_, err = bus.StoredAfter(ctx, stream, 9, times[9])
	require.ErrorContains(t, err, bus.StreamAudit)
	_, _, err = bus.ResumeAfter(ctx, stream, 9, times[9])
	require.ErrorContains(t, err, bus.StreamAudit)
	_, _, err = bus.ResumeAfter(ctx, stream, 12, times[9])
	require.ErrorContains(t, err, bus.StreamAudit)
}

// Connect reaches the embedded server in process; ConnectNetwork over TCP,
// which the server lists with the client's loopback address.
func TestBus_ConnectNetwork(t *testing.T) {
	b := bustest.Run(t)
	in, err := b.Connect("in-process")
	require.NoError(t, err)
	defer in.Close()
	tcp, err := b.ConnectNetwork("over-tcp")
	require.NoError(t, err)
	defer tcp.Close()
	require.NoError(t, in.Flush())
	require.NoError(t, tcp.Flush())

	connz, err := b.Server().Connz(&server.ConnzOptions{})
	require.NoError(t, err)
	ips := map[string]string{}
	for _, c := range connz.Conns {
		ips[c.Name] = c.IP
	}
	assert.Contains(t, ips, "in-process")
	assert.Empty(t, ips["in-process"], "no IP: a pipe")
	assert.Equal(t, "127.0.0.1", ips["over-tcp"])

	// Both carry messages.
	sub, err := in.SubscribeSync("codi.test")
	require.NoError(t, err)
	require.NoError(t, in.Flush())
	require.NoError(t, tcp.Publish("codi.test", []byte("x")))
	_, err = sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
}
