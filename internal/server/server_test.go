package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/internal/server"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfig_Validate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     server.Config
		wantErr string
	}{
		{"defaults", server.Config{DataDir: "x"}, ""},
		{"fdb", server.Config{DataDir: "x", Store: server.StoreFDB}, ""},
		{"pebble", server.Config{DataDir: "x", Store: server.StorePebble}, ""},
		{"no dir", server.Config{}, "data directory"},
		{"bad store", server.Config{DataDir: "x", Store: "mysql"}, `store "mysql"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.NotEmpty(t, tt.cfg.Store)
		})
	}
}

// An empty Config.Store is the embedded engine whose files the data
// directory holds, and server.DefaultStore for a new one; a store given
// is kept.
func TestConfig_Validate_StoreFromDataDir(t *testing.T) {
	tests := []struct {
		name  string
		have  string // a file, or a directory when it ends in /
		store string
		want  string
	}{
		{"new directory", "", "", server.DefaultStore},
		{"pebble's directory", server.PebbleDir + "/", "", server.StorePebble},
		{"bolt's state.db", "state.db", "", server.StoreBolt},
		{"bolt's store.db", "store.db", "", server.StoreBolt},
		{"a file named pebble is not pebble's", server.PebbleDir, "", server.DefaultStore},
		{"given wins", server.PebbleDir + "/", server.StoreBolt, server.StoreBolt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			switch {
			case strings.HasSuffix(tt.have, "/"):
				require.NoError(t, os.Mkdir(filepath.Join(dir, tt.have), 0o755))
			case tt.have != "":
				require.NoError(t, os.WriteFile(filepath.Join(dir, tt.have), nil, 0o600))
			}
			cfg := server.Config{DataDir: dir, Store: tt.store}
			require.NoError(t, cfg.Validate())
			assert.Equal(t, tt.want, cfg.Store)
		})
	}
}

// A server started without a store on a pebble data directory runs on
// pebble, and says so.
func TestServer_Start_StoreFromDataDir(t *testing.T) {
	dir := t.TempDir()
	s, err := server.Start(context.Background(), server.Config{DataDir: dir, NATSListen: "127.0.0.1:-1", Store: server.StorePebble}, bustest.Logger(t))
	require.NoError(t, err)
	require.NoError(t, s.Stop())
	s, err = server.Start(context.Background(), server.Config{DataDir: dir, NATSListen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.NoError(t, err)
	assert.Equal(t, server.StorePebble, s.Store())
	require.NoError(t, s.Stop())
	assert.NoFileExists(t, filepath.Join(dir, "state.db"))
}

func TestServer_StartStop(t *testing.T) {
	dir := t.TempDir()
	s, err := server.Start(context.Background(), server.Config{DataDir: filepath.Join(dir, "new"), NATSListen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "new"), s.DataDir())
	assert.True(t, s.Bus().Embedded())

	nc := bustest.Connect(t, s.Bus())
	c, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Start returns once both services answer: no retry needed.
	_, err = c.Status(ctx)
	require.NoError(t, err)
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	_, err = ac.Status(ctx)
	require.NoError(t, err)
	ev, err := c.Apply(ctx, "task", "ADR-028", state.Command{Op: state.OpPut, Fields: map[string]any{"status": "open"}})
	require.NoError(t, err)
	assert.Equal(t, state.StatusApplied, ev.Status)
	nc.Close()

	require.NoError(t, s.Stop())
	require.NoError(t, s.Stop(), "Stop is idempotent")
	for _, f := range []string{"state.db", "audit.db"} {
		assert.FileExists(t, filepath.Join(dir, "new", f))
	}
	// The audit log is made with the larger pages of appended files, the
	// state store with the OS page.
	for f, want := range map[string]int{"audit.db": boltkv.AppendPageSize, "state.db": os.Getpagesize()} {
		db, err := boltkv.Open(filepath.Join(dir, "new", f), boltkv.Options{})
		require.NoError(t, err)
		assert.Equal(t, want, db.PageSize(), f)
		require.NoError(t, db.Close())
	}
	select {
	case <-s.Failed():
		t.Fatal("no service failed")
	default:
	}
}

// Losing its stream no longer ends the state service (issue 11, input 4):
// it creates CODI_STATE again and carries on, and the server with it.
func TestServer_StreamDeletedRecreated(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.NoError(t, err)
	js := s.Bus().JetStream()
	require.NoError(t, js.DeleteStream(context.Background(), bus.StreamState))
	require.Eventually(t, func() bool {
		_, err := js.Stream(context.Background(), bus.StreamState)
		return err == nil
	}, 20*time.Second, 20*time.Millisecond, "CODI_STATE recreated")
	require.Eventually(t, func() bool { return s.Problem() == nil }, 10*time.Second, 10*time.Millisecond)
	// CODI_MSG, which no service reads, comes back too.
	require.NoError(t, js.DeleteStream(context.Background(), bus.StreamMsg))
	require.Eventually(t, func() bool {
		_, err := js.Stream(context.Background(), bus.StreamMsg)
		return err == nil
	}, 20*time.Second, 20*time.Millisecond, "CODI_MSG recreated")
	select {
	case <-s.Failed():
		t.Fatal("a service failed")
	default:
	}
	require.NoError(t, s.Stop())
}

func TestStart_Errors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err := server.Start(context.Background(), server.Config{DataDir: filepath.Join(file, "data")}, bustest.Logger(t))
	require.ErrorContains(t, err, "data directory")

	// A breaker's input: --data on a symbolic link to nothing said
	// "mkdir ...: file exists".
	link := filepath.Join(t.TempDir(), "link")
	require.NoError(t, os.Symlink(filepath.Join(t.TempDir(), "gone"), link))
	_, err = server.Start(context.Background(), server.Config{DataDir: link}, bustest.Logger(t))
	require.ErrorContains(t, err, "is a symbolic link to ")
	require.ErrorContains(t, err, "which does not exist")
	_, err = server.Start(context.Background(), server.Config{DataDir: file}, bustest.Logger(t))
	require.ErrorContains(t, err, "is a file, not a directory")

	_, err = server.Start(context.Background(), server.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:nope"}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrConfig)

	_, err = server.Start(context.Background(), server.Config{}, bustest.Logger(t))
	require.Error(t, err)
}

// A service that cannot start (here: a codi-state consumer that exists as a
// push consumer on the NATS server) fails Start with an error, and
// everything Start opened is closed again.
func TestStart_ServiceFailsWhileStarting(t *testing.T) {
	ext := bustest.Run(t)
	js := ext.JetStream()
	_, err := js.CreateOrUpdateConsumer(context.Background(), bus.StreamState, jetstream.ConsumerConfig{
		Durable: "codi-state", DeliverSubject: "elsewhere", AckPolicy: jetstream.AckExplicitPolicy,
	})
	require.NoError(t, err)
	dir := t.TempDir()
	_, err = server.Start(context.Background(), server.Config{DataDir: dir, NATSURL: ext.ClientURL()}, bustest.Logger(t))
	require.ErrorContains(t, err, "failed while starting")

	// The stores were closed: a new server can open them.
	require.NoError(t, js.DeleteConsumer(context.Background(), bus.StreamState, "codi-state"))
	s, err := server.Start(context.Background(), server.Config{DataDir: dir, NATSURL: ext.ClientURL()}, bustest.Logger(t))
	require.NoError(t, err)
	require.NoError(t, s.Stop())
}

func TestStart_BadServiceConfig(t *testing.T) {
	_, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1",
		State: state.Config{MaxBatch: -1}}, bustest.Logger(t))
	require.Error(t, err)
	_, err = server.Start(context.Background(), server.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1",
		Audit: audit.Config{MaxBatchEvents: -1}}, bustest.Logger(t))
	require.Error(t, err)
}

func TestServer_WebSocketListener(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1", WSListen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	url := s.Bus().Server().WebsocketURL()
	require.True(t, strings.HasPrefix(url, "ws://127.0.0.1:"), url)
	// The official client over WebSocket reads like any other client.
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	c, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Claim(ctx, "task", "T-1", time.Minute, nil)
	require.NoError(t, err)
	rec, err := c.Get(ctx, "task", "T-1", 0)
	require.NoError(t, err)
	assert.Equal(t, "agent-1", rec.Holder())
	// Its HTTP side and metrics are there.
	require.NotNil(t, s.HTTP())
	require.NotNil(t, s.Metrics())
}

func TestServer_NoWebSocketByDefault(t *testing.T) {
	s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1"}, bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	// Nothing listens for WebSocket clients: the server's URL names no
	// chosen port.
	assert.Equal(t, "ws://:0", s.Bus().Server().WebsocketURL())
}

// With auth the HTTP API asks for a login; without it, it answers.
func TestServer_HTTPAuth(t *testing.T) {
	for _, withAuth := range []bool{false, true} {
		s, err := server.Start(context.Background(), server.Config{DataDir: t.TempDir(), NATSListen: "127.0.0.1:-1", Auth: withAuth}, bustest.Logger(t))
		require.NoError(t, err)
		rec := httptest.NewRecorder()
		s.HTTP().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/status", nil))
		want := http.StatusOK
		if withAuth {
			want = http.StatusUnauthorized
		}
		assert.Equal(t, want, rec.Code, "auth %v: %s", withAuth, rec.Body)
		require.NoError(t, s.Stop())
	}
}

// assertOneInlineRecord applies a command on s and checks that its audit
// record is in the log once, written in the command's own transaction, and
// that the chain verifies.
func assertOneInlineRecord(t *testing.T, s *server.Server) {
	t.Helper()
	nc := bustest.Connect(t, s.Bus())
	c, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := c.Apply(ctx, "task", "ADR-028", state.Command{Op: state.OpPut, Fields: map[string]any{"status": "open"}})
	require.NoError(t, err)
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	res, err := ac.Query(ctx, audit.Query{Source: "codi-state"})
	require.NoError(t, err)
	require.Len(t, res.Records, 1)
	assert.Contains(t, res.Records[0].MsgID, strconv.FormatUint(ev.Seq, 10))
	v, err := ac.Verify(ctx, audit.VerifyRequest{})
	require.NoError(t, err)
	assert.True(t, v.OK, "%+v", v)
	// The status counts the record the state service appended, with no
	// append of the audit service's own after it.
	all, err := ac.Query(ctx, audit.Query{})
	require.NoError(t, err)
	st, err := ac.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(len(all.Records)), st.Count, "status %+v", st)
	assert.Equal(t, all.Records[len(all.Records)-1].Hash, st.Head)
}

// With InlineAudit both services share store.db and a state command's
// audit record is appended in the command's own transaction: it is in
// the log, once, without the audit service's commit (issue 16, the single
// commit path's prototype).
func TestServer_InlineAudit(t *testing.T) {
	dir := t.TempDir()
	s, err := server.Start(context.Background(), server.Config{DataDir: dir, NATSListen: "127.0.0.1:-1", InlineAudit: true}, bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	assertOneInlineRecord(t, s)

	require.NoError(t, s.Stop())
	assert.FileExists(t, filepath.Join(dir, "store.db"))
	assert.NoFileExists(t, filepath.Join(dir, "state.db"))
}

// With Store pebble both services share one pebble database in
// DATA/pebble, and a state command's audit record is appended in the
// command's own transaction: it is in the log, once, and the chain
// verifies. A restart on the same directory finds both.
func TestServer_Pebble(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, NATSListen: "127.0.0.1:-1", Store: server.StorePebble}
	s, err := server.Start(context.Background(), cfg, bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	assertOneInlineRecord(t, s)
	require.NoError(t, s.Stop())
	assert.DirExists(t, filepath.Join(dir, server.PebbleDir))
	for _, f := range []string{"state.db", "audit.db", "store.db"} {
		assert.NoFileExists(t, filepath.Join(dir, f))
	}

	s, err = server.Start(context.Background(), cfg, bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop() })
	nc := bustest.Connect(t, s.Bus())
	c, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, err := c.Get(ctx, "task", "ADR-028", 0)
	require.NoError(t, err)
	assert.JSONEq(t, `"open"`, string(rec.Fields["status"]))
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	res, err := ac.Query(ctx, audit.Query{Source: "codi-state"})
	require.NoError(t, err)
	assert.Len(t, res.Records, 1, "after the restart")
}
