package bus_test

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
)

func TestDiskLimits(t *testing.T) {
	tests := []struct {
		name    string
		cfg     bus.Config
		disk    bus.Disk
		want    [3]int64 // msg, state, audit
		wantErr []string
	}{
		{"large disk: capped at 10 GiB", bus.Config{}, bus.Disk{Total: 1000 * gib, Free: 900 * gib}, [3]int64{10 * gib, 10 * gib, 10 * gib}, nil},
		{"small disk: an eighth of it", bus.Config{}, bus.Disk{Total: 64 * mib, Free: 60 * mib}, [3]int64{8 * mib, 8 * mib, 8 * mib}, nil},
		{"nearly full: a quarter of the room", bus.Config{}, bus.Disk{Total: 1000 * gib, Free: 4 * gib}, [3]int64{gib, gib, gib}, nil},
		{"tiny: at least 4 MiB", bus.Config{}, bus.Disk{Total: 8 * mib, Free: 8 * mib}, [3]int64{4 * mib, 4 * mib, 4 * mib}, nil},
		{"never below what a stream holds", bus.Config{}, bus.Disk{Total: 64 * mib, Free: 10 * mib, InStreams: map[string]int64{bus.StreamAudit: 20 * mib}},
			[3]int64{30 * mib / 4, 30 * mib / 4, 20 * mib}, nil},
		{"given limits kept", bus.Config{MsgMaxBytes: 5 * mib, AuditMaxBytes: 6 * mib}, bus.Disk{Total: 64 * mib, Free: 60 * mib},
			[3]int64{5 * mib, 8 * mib, 6 * mib}, nil},
		{"given limit below what the stream holds", bus.Config{MsgMaxBytes: 5 * mib}, bus.Disk{Total: 64 * mib, Free: 50 * mib, InStreams: map[string]int64{bus.StreamMsg: 6 * mib}},
			[3]int64{}, []string{"CODI_MSG holds 6 MiB", "limit 5 MiB", "--msg-max-bytes", "discarded"}},
		{"given limits larger than the room", bus.Config{AuditMaxBytes: gib}, bus.Disk{Dir: "/d/jetstream", Total: 64 * mib, Free: 60 * mib, InStreams: map[string]int64{bus.StreamMsg: mib}},
			[3]int64{}, []string{"add up to 1.02 GiB", "CODI_AUDIT 1 GiB", "room for 61 MiB", "60 MiB free of 64 MiB", "1 MiB already in the streams", "/d/jetstream"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			err := bus.DiskLimits(&cfg, tt.disk)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, bus.ErrDiskLimits)
				for _, w := range tt.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, [3]int64{cfg.MsgMaxBytes, cfg.StateMaxBytes, cfg.AuditMaxBytes})
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 10 * gib: "10 GiB", 9_999_999_999: "9.31 GiB", 1 << 60: "1024 PiB"} {
		assert.Equal(t, want, bus.FormatBytes(n), n)
	}
}

// rawServer runs a plain nats-server with JetStream in dir, limited to
// maxStore bytes of file storage (0: nats-server's default).
func rawServer(t *testing.T, dir string, maxStore int64) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, JetStreamMaxStore: maxStore, NoSigs: true})
	require.NoError(t, err)
	srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second))
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

// Issue 11, input 3: streams made with 10 GiB limits (what codi2 used to
// ask on any disk) on a 64 MiB disk: codi2 starts there, lowers the limits
// to what the disk can hold and keeps the stored messages.
func TestStart_SmallDisk_LowersOldLimits(t *testing.T) {
	dir := proctest.SmallDisk(t, 64*mib)
	raw := rawServer(t, dir, 1<<40)
	nc, err := nats.Connect(raw.ClientURL())
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	old := bus.Config{DataDir: dir, MsgMaxBytes: 10 * gib, StateMaxBytes: 10 * gib, AuditMaxBytes: 10 * gib}
	require.NoError(t, old.Validate())
	require.NoError(t, bus.EnsureStreams(ctx, js, old))
	for i := range 10 {
		_, err := js.Publish(ctx, "codi.msg.agent-2.agent-1.note", []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
	nc.Close()
	raw.Shutdown()
	raw.WaitForShutdown()

	b, err := bus.Start(ctx, bus.Config{DataDir: dir, Listen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.NoError(t, err)
	defer b.Close()
	for _, name := range []string{bus.StreamMsg, bus.StreamState, bus.StreamAudit} {
		s, err := b.JetStream().Stream(ctx, name)
		require.NoError(t, err)
		assert.Equal(t, 8*mib, s.CachedInfo().Config.MaxBytes, name)
		if name == bus.StreamMsg {
			assert.Equal(t, uint64(10), s.CachedInfo().State.Msgs)
		}
	}
	assert.Equal(t, 8*mib, b.Config().MsgMaxBytes)
}

// On a NATS whose JetStream cannot reserve the limits, the refusal names
// the numbers.
func TestStart_External_StorageRefusalNamesNumbers(t *testing.T) {
	raw := rawServer(t, t.TempDir(), 64*mib)
	_, err := bus.Start(context.Background(), bus.Config{URL: raw.ClientURL()}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrDiskLimits)
	for _, w := range []string{"insufficient storage resources", "a limit of 10 GiB was asked for CODI_MSG", "has reserved 0 B"} {
		assert.Contains(t, err.Error(), w)
	}
	// Limits that fit are taken.
	b, err := bus.Start(context.Background(), bus.Config{URL: raw.ClientURL(), MsgMaxBytes: 8 * mib, StateMaxBytes: 8 * mib, AuditMaxBytes: 8 * mib}, bustest.Logger(t))
	require.NoError(t, err)
	b.Close()
}

func TestMeasureDisk(t *testing.T) {
	dir := t.TempDir()
	b, err := bus.Start(context.Background(), bus.Config{DataDir: dir, Listen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.NoError(t, err)
	_, err = b.JetStream().Publish(context.Background(), "codi.audit.log.a.b", make([]byte, 1000))
	require.NoError(t, err)
	b.Close()
	d, err := bus.MeasureDisk(dir)
	require.NoError(t, err)
	assert.Greater(t, d.Total, d.Free)
	assert.Greater(t, d.InStreams[bus.StreamAudit], int64(1000))
	assert.Equal(t, d.Free+d.InStreams[bus.StreamAudit]+d.InStreams[bus.StreamMsg]+d.InStreams[bus.StreamState], d.Room())

	_, err = bus.MeasureDisk("/nonexistent/dir")
	require.Error(t, err)
	// An embedded server whose data directory cannot be measured does not start.
	file := dir + "/file"
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = bus.Start(context.Background(), bus.Config{DataDir: file, Listen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrStart)
}

// With DeferListen the server takes no client until Listen, and Start
// still finds a taken address first.
func TestStart_DeferListen(t *testing.T) {
	port := proctest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	b, err := bus.Start(context.Background(), bus.Config{DataDir: t.TempDir(), Listen: addr, DeferListen: true}, bustest.Logger(t))
	require.NoError(t, err)
	defer b.Close()
	_, err = nats.Connect("nats://"+addr, nats.Timeout(time.Second))
	require.Error(t, err, "nobody can connect before Listen")
	in, err := b.Connect("in-process")
	require.NoError(t, err, "in-process connections work")
	in.Close()
	require.NoError(t, b.Listen())
	require.NoError(t, b.Listen(), "a second Listen does nothing")
	nc, err := nats.Connect(b.ClientURL())
	require.NoError(t, err)
	nc.Close()

	// A taken address is found by Start.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, err = bus.Start(context.Background(), bus.Config{DataDir: t.TempDir(), Listen: ln.Addr().String(), DeferListen: true}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrStart)
	assert.Contains(t, err.Error(), "address already in use")

	// Taken between Start and Listen: Listen fails.
	port = proctest.FreePort(t)
	addr = "127.0.0.1:" + strconv.Itoa(port)
	b2, err := bus.Start(context.Background(), bus.Config{DataDir: t.TempDir(), Listen: addr, DeferListen: true}, bustest.Logger(t))
	require.NoError(t, err)
	defer b2.Close()
	ln2, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	defer ln2.Close()
	err = b2.Listen()
	require.ErrorIs(t, err, bus.ErrStart)
	assert.Contains(t, err.Error(), addr)
}

// Issue 11, input 2: an exclusive bus refuses a NATS another exclusive bus
// serves, naming it; a non-exclusive client bus is not refused.
func TestStart_Exclusive(t *testing.T) {
	first := bustest.Run(t, bus.Config{Exclusive: true, Identity: bus.Identity{DataDir: "/data/first"}})
	_, err := bus.Start(context.Background(), bus.Config{URL: first.ClientURL(), Exclusive: true}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrAnotherInstance)
	for _, w := range []string{"pid " + strconv.Itoa(os.Getpid()), "data /data/first", "started ", first.ClientURL()} {
		assert.Contains(t, err.Error(), w)
	}

	plain, err := bus.Start(context.Background(), bus.Config{URL: first.ClientURL()}, bustest.Logger(t))
	require.NoError(t, err, "a bus that does not serve the streams is not refused")
	plain.Close()

	// Alone on a NATS, an exclusive bus waits out the probe and starts;
	// then it answers probes itself.
	ext := bustest.Run(t)
	start := time.Now()
	second, err := bus.Start(context.Background(), bus.Config{URL: ext.ClientURL(), Exclusive: true, InstanceProbeWait: 50 * time.Millisecond}, bustest.Logger(t))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	_, err = bus.Start(context.Background(), bus.Config{URL: ext.ClientURL(), Exclusive: true}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrAnotherInstance)
	second.Close()
	third, err := bus.Start(context.Background(), bus.Config{URL: ext.ClientURL(), Exclusive: true, InstanceProbeWait: 50 * time.Millisecond}, bustest.Logger(t))
	require.NoError(t, err, "once the first is gone, another may serve")
	third.Close()
}

func TestIdentity_String(t *testing.T) {
	id := bus.Identity{PID: 7, Host: "h"}
	assert.Equal(t, "pid 7 on host h", id.String())
	id.DataDir = "/d"
	id.Started = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	assert.Equal(t, "pid 7 on host h, data /d, started 2026-11-30T12:00:00Z", id.String())
}

func TestCheckListen(t *testing.T) {
	require.ErrorIs(t, bus.CheckListen("nohost"), bus.ErrConfig)
	require.NoError(t, bus.CheckListen("127.0.0.1:-1"))
	require.NoError(t, bus.CheckListen("127.0.0.1:0"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	require.ErrorIs(t, bus.CheckListen(ln.Addr().String()), bus.ErrStart)
}

// An embedded server refuses given limits larger than its disk, before it
// starts.
func TestStart_GivenLimitsTooLarge(t *testing.T) {
	dir := t.TempDir()
	_, err := bus.Start(context.Background(), bus.Config{DataDir: dir, Listen: "127.0.0.1:-1", AuditMaxBytes: 1 << 60}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrDiskLimits)
	assert.Contains(t, err.Error(), "CODI_AUDIT 1024 PiB")
}

// Without limits, StreamConfigs gives each stream the default.
func TestStreamConfigs_DefaultLimit(t *testing.T) {
	for _, sc := range bus.StreamConfigs(bus.Config{}) {
		assert.Equal(t, int64(bus.DefaultStreamMaxBytes), sc.MaxBytes, sc.Name)
	}
}

// Answers on the instance subject that are not an instance's identity
// (another program's, or empty) do not block a start.
func TestStart_Exclusive_IgnoresOtherAnswers(t *testing.T) {
	ext := bustest.Run(t)
	nc := bustest.Connect(t, ext)
	_, err := nc.Subscribe("codi.server.instance", func(m *nats.Msg) { _ = m.Respond([]byte("not json")) })
	require.NoError(t, err)
	_, err = nc.Subscribe("codi.server.instance", func(m *nats.Msg) { _ = m.Respond(nil) })
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	b, err := bus.Start(context.Background(), bus.Config{URL: ext.ClientURL(), Exclusive: true, InstanceProbeWait: 100 * time.Millisecond}, bustest.Logger(t))
	require.NoError(t, err)
	b.Close()
}
