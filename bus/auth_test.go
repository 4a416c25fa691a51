package bus_test

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// authBus runs a bus with auth on and returns it with its authority.
func authBus(t *testing.T) (*bus.Bus, *auth.Authority) {
	t.Helper()
	a, err := auth.Open(filepath.Join(t.TempDir(), "auth"))
	require.NoError(t, err)
	b := bustest.Run(t, bus.Config{Auth: a})
	// The server's inbox service makes agents' consumers for them.
	svc, err := bus.ServeInboxes(b.Conn(), bustest.Logger(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = svc.Stop() })
	return b, a
}

// creds issues a credentials file for id with role in t.TempDir().
func creds(t *testing.T, a *auth.Authority, id string, role auth.Role) string {
	t.Helper()
	data, _, err := bus.Issue(a, id, role)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), id+".creds")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	return file
}

// violations collects the permission violations a connection is told of.
type violations struct {
	mu   sync.Mutex
	errs []error
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	v.errs = append(v.errs, err)
	v.mu.Unlock()
}

func (v *violations) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, err := range v.errs {
		if errors.Is(err, nats.ErrPermissionViolation) {
			n++
		}
	}
	return n
}

func TestAuth_AgentSendsOnlyAsItself(t *testing.T) {
	b, a := authBus(t)
	var v violations
	nc := bustest.Connect(t, b, bus.Credentials(creds(t, a, "agent-1", auth.RoleAgent)), nats.ErrorHandler(v.handler))
	me, err := bus.NewAgent("agent-1", nc)
	require.NoError(t, err)
	var rv violations
	rc := bustest.Connect(t, b, bus.Credentials(creds(t, a, "agent-2", auth.RoleAgent)), nats.ErrorHandler(rv.handler))
	other, err := bus.NewAgent("agent-2", rc)
	require.NoError(t, err)
	live := make(chan bus.Message, 10)
	in, err := other.Subscribe(func(m bus.Message) { live <- m })
	require.NoError(t, err)
	defer func() { in.Unsubscribe(); <-in.Done() }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = me.Send(ctx, "agent-2", "task.assign", []byte("x"))
	require.NoError(t, err)

	// Impersonation: agent-1 publishing as agent-3.
	require.NoError(t, nc.Publish("codi.msg.agent-2.agent-3.task", []byte("forged")))
	require.Eventually(t, func() bool { return v.count() == 1 }, 5*time.Second, 10*time.Millisecond)

	var got []bus.Message
	err = other.Receive(ctx, bus.ReceiveConfig{UntilIdle: true}, func(_ context.Context, m bus.Message) error {
		got = append(got, m)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, "agent-1", got[0].From)
	assert.Equal(t, "agent-1", (<-live).From, "the live inbox works under auth")
	assert.Zero(t, rv.count(), "agent-2's own inbox, live and durable, needs nothing it may not do")
}

func TestAuth_NoCredentialsRefused(t *testing.T) {
	b, _ := authBus(t)
	_, err := nats.Connect(b.ClientURL(), nats.MaxReconnects(0))
	require.ErrorIs(t, err, nats.ErrAuthorization)
}

func TestIsLoopback(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:4222", true},
		{"127.1.2.3:-1", true},
		{"[::1]:4222", true},
		{"localhost:4222", true},
		{"0.0.0.0:4222", false},
		{":4222", false},
		{"[::]:4222", false},
		{"10.0.0.1:4222", false},
		{"example.com:4222", false},
		{"no port", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, bus.IsLoopback(tt.addr), tt.addr)
	}
}

func TestPermissions(t *testing.T) {
	assert.Nil(t, bus.Permissions(auth.RoleAdmin, "root"), "admin: everything")
	a := bus.Permissions(auth.RoleAgent, "agent/1")
	assert.Contains(t, a.Pub.Allow, "codi.msg.*.agent/1.>")
	assert.Contains(t, a.Pub.Allow, "codi.state.cmd.*.*.agent/1")
	assert.Contains(t, a.Pub.Allow, "$JS.API.CONSUMER.MSG.NEXT.CODI_MSG."+bus.ConsumerName("agent/1"))
	assert.Contains(t, a.Sub.Allow, "_INBOX.agent/1.>")
	assert.NotContains(t, a.Sub.Allow, "_INBOX.>")
	assert.Nil(t, a.Resp, "no replies to arbitrary subjects")
	o := bus.Permissions(auth.RoleObserver, "dash")
	assert.Contains(t, o.Pub.Allow, subjects.StateGetWildcard)
	for _, s := range o.Pub.Allow {
		assert.False(t, strings.HasPrefix(s, "codi.msg") || strings.HasPrefix(s, "codi.state.cmd") || strings.HasPrefix(s, "codi.audit.log") || strings.HasPrefix(s, "$JS"), s)
	}
	i := bus.Permissions(auth.RoleInternal, "codi2")
	assert.Contains(t, i.Pub.Deny, "$JS.API.STREAM.DELETE.>")
	assert.NotContains(t, i.Pub.Allow, "codi.msg.>")
}

// A data directory keeps its streams when it is served with auth after
// without, and without after with.
func TestAuth_StreamsFollowTheMode(t *testing.T) {
	dir := t.TempDir()
	a, err := auth.Open(filepath.Join(dir, "auth"))
	require.NoError(t, err)
	admin := creds(t, a, "root", auth.RoleAdmin)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	count := func(b *bus.Bus, opts ...nats.Option) uint64 {
		js, err := jetstream.New(bustest.Connect(t, b, opts...))
		require.NoError(t, err)
		st, err := js.Stream(ctx, bus.StreamMsg)
		require.NoError(t, err)
		return st.CachedInfo().State.Msgs
	}
	send := func(b *bus.Bus, opts ...nats.Option) {
		ag, err := bus.NewAgent("agent-1", bustest.Connect(t, b, opts...))
		require.NoError(t, err)
		_, err = ag.Send(ctx, "agent-2", "note", nil)
		require.NoError(t, err)
	}
	start := func(c bus.Config) *bus.Bus {
		c.DataDir, c.Listen = dir, "127.0.0.1:-1"
		b, err := bus.Start(ctx, c, bustest.Logger(t))
		require.NoError(t, err)
		return b
	}
	b := start(bus.Config{})
	send(b)
	b.Close()
	b = start(bus.Config{Auth: a})
	assert.Equal(t, uint64(1), count(b, bus.Credentials(admin)), "open -> auth")
	send(b, bus.Credentials(admin))
	b.Close()
	b = start(bus.Config{})
	assert.Equal(t, uint64(2), count(b), "auth -> open")
	b.Close()
}

// A revocation written to the registry (as `codi2 agent revoke` does)
// cuts the connected client off and keeps it out.
func TestAuth_Revoke(t *testing.T) {
	b, a := authBus(t)
	file := creds(t, a, "agent-1", auth.RoleAgent)
	other := bustest.Connect(t, b, bus.Credentials(creds(t, a, "agent-2", auth.RoleAgent)))
	cut := make(chan struct{})
	var once sync.Once // disconnected when cut off, and again when closed
	nc := bustest.Connect(t, b, bus.Credentials(file), nats.ReconnectWait(10*time.Millisecond),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { once.Do(func() { close(cut) }) }))
	cli, err := auth.Open(a.Dir())
	require.NoError(t, err)
	_, err = cli.Revoke("agent-1")
	require.NoError(t, err)
	select {
	case <-cut:
	case <-time.After(time.Second):
		t.Fatal("not cut off within a second")
	}
	_, err = nats.Connect(b.ClientURL(), bus.Credentials(file), nats.MaxReconnects(0))
	require.ErrorIs(t, err, nats.ErrAuthorization)
	assert.False(t, nc.IsConnected())
	assert.True(t, other.IsConnected(), "others stay")
}

func TestCredentials_Errors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, []byte(content), 0o600))
		return f
	}
	for _, tc := range []struct{ name, file, want string }{
		{"missing", filepath.Join(dir, "none.creds"), "no such file"},
		{"no jwt", write("empty.creds", "hello"), "no valid user JWT"},
		{"bad jwt", write("bad.creds", "-----BEGIN NATS USER JWT-----\neyJhbGciOiJlZDI1NTE5In0.e30.x\n------END NATS USER JWT------\n"), "no valid user JWT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := nats.Connect("nats://127.0.0.1:1", bus.Credentials(tc.file))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	a, err := auth.Open(t.TempDir())
	require.NoError(t, err)
	good, _, err := bus.Issue(a, "agent-1", auth.RoleAgent)
	require.NoError(t, err)
	// A JWT without its seed: the standard option refuses it.
	jwtOnly := strings.SplitAfter(string(good), "------END NATS USER JWT------\n")[0]
	_, err = nats.Connect("nats://127.0.0.1:1", bus.Credentials(write("noseed.creds", jwtOnly)))
	require.Error(t, err)
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := bustest.SelfSigned(t)
	b := bustest.Run(t, bus.Config{TLSCert: certFile, TLSKey: keyFile})
	nc, err := b.ConnectNetwork("probe")
	require.NoError(t, err, "the bus's own network connections trust its certificate")
	nc.Close()
	nc = bustest.Connect(t, b, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	assert.True(t, nc.IsConnected())
	_, err = nats.Connect(b.ClientURL(), nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}), nats.MaxReconnects(0))
	require.Error(t, err, "a client that does not trust the certificate")

	other, otherKey, _ := bustest.SelfSigned(t)
	_, err = bus.Start(context.Background(), bus.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:-1", TLSCert: other, TLSKey: keyFile}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrConfig, "certificate and key do not match")
	_ = otherKey
	cfg := bus.Config{DataDir: t.TempDir(), TLSCert: certFile}
	require.ErrorIs(t, cfg.Validate(), bus.ErrConfig, "a certificate without its key")
}

// With URL and Creds the bus's own connections present the credentials
// to the external server.
func TestAuth_ExternalWithCreds(t *testing.T) {
	ext, a := authBus(t)
	admin := creds(t, a, "root", auth.RoleAdmin)
	b := bustest.Run(t, bus.Config{URL: ext.ClientURL(), Creds: admin})
	assert.True(t, b.Conn().IsConnected())
	_, err := bus.Start(context.Background(), bus.Config{URL: ext.ClientURL(), StartTimeout: time.Second}, bustest.Logger(t))
	require.ErrorIs(t, err, bus.ErrStart, "without credentials")
}

func TestIssue_ReservedIDs(t *testing.T) {
	a, err := auth.Open(filepath.Join(t.TempDir(), "auth"))
	require.NoError(t, err)
	for _, id := range []string{"codi-state", "codi-audit", "codi-server", "codi-x"} {
		_, _, err := bus.Issue(a, id, auth.RoleAgent)
		require.ErrorIs(t, err, bus.ErrConfig, id)
	}
	_, _, err = bus.Issue(a, "codi2-helper", auth.RoleAgent)
	require.NoError(t, err)
}
