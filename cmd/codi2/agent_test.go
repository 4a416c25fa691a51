package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codi2/codi2/bus/bustest"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runCmd runs a codi2 command line and returns its exit code and output.
func runCmd(ctx context.Context, args ...string) (int, string, string) {
	var stdout, stderr proctest.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestRun_Agent(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(t.TempDir())
	code, out, errOut := runCmd(context.Background(), "agent", "add", "agent-1", "--data", dir)
	require.Equal(t, 0, code, errOut)
	wd, _ := os.Getwd()
	assert.Equal(t, "agent-1 (agent) credentials written to "+filepath.Join(wd, "agent-1.creds")+"\n", out)
	fi, err := os.Stat("agent-1.creds")
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "credentials are private")
	data, _ := os.ReadFile("agent-1.creds")
	assert.Contains(t, string(data), "BEGIN NATS USER JWT")
	assert.Contains(t, string(data), "BEGIN USER NKEY SEED")

	// Flags before the id, JSON out, another role and file.
	code, out, errOut = runCmd(context.Background(), "agent", "add", "--role", "observer", "--out", "dash.creds", "--json", "dash", "--data", dir)
	require.Equal(t, 0, code, errOut)
	var added map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &added))
	assert.Equal(t, "dash", added["id"])
	assert.Equal(t, "observer", added["role"])
	assert.Equal(t, filepath.Join(wd, "dash.creds"), added["creds"])
	assert.Nil(t, added["revoked_at"])

	code, out, _ = runCmd(context.Background(), "agent", "ls", "--data", dir)
	require.Equal(t, 0, code)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 3, out)
	assert.Regexp(t, `^ID\s+ROLE\s+ISSUED\s+REVOKED\s+KEY$`, lines[0])
	assert.Regexp(t, `^agent-1\s+agent\s+\S+\s+-\s+U[A-Z0-9]{55}$`, lines[1])
	assert.Regexp(t, `^dash\s+observer\s`, lines[2])

	code, out, _ = runCmd(context.Background(), "agent", "revoke", "agent-1", "--data", dir)
	require.Equal(t, 0, code)
	assert.Equal(t, "agent-1: 1 credentials revoked\n", out)
	code, out, _ = runCmd(context.Background(), "agent", "ls", "--json", "--data", dir)
	require.Equal(t, 0, code)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	var first map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	assert.NotNil(t, first["revoked_at"])

	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int // 2 bad usage, 1 an error of what it does
		wantErr  string
	}{
		{"no subcommand", []string{"agent"}, 2, "missing subcommand"},
		{"unknown subcommand", []string{"agent", "promote"}, 2, `unknown subcommand "promote"`},
		{"add without id", []string{"agent", "add", "--data", dir}, 2, "want one agent id"},
		{"add two ids", []string{"agent", "add", "a", "b", "--data", dir}, 2, "want one agent id"},
		{"bad role", []string{"agent", "add", "x", "--role", "root", "--data", dir}, 2, `--role: auth: unknown role "root"`},
		{"bad id", []string{"agent", "add", "a.b", "--data", dir}, 2, "invalid agent id"},
		{"reserved id", []string{"agent", "add", "all", "--out", "all.creds", "--data", dir}, 2, "broadcast target"},
		{"file exists", []string{"agent", "add", "agent-1", "--data", dir}, 1, "file exists"},
		{"bad flag", []string{"agent", "add", "x", "--nope"}, 2, "flag provided but not defined"},
		{"revoke unknown", []string{"agent", "revoke", "nobody", "--data", dir}, 1, `unknown agent "nobody"`},
		{"revoke without id", []string{"agent", "revoke", "--data", dir}, 2, "want one agent id"},
		{"ls extra", []string{"agent", "ls", "x", "--data", dir}, 2, "unexpected arguments"},
		{"unreadable data", []string{"agent", "ls", "--data", "/proc/no/such"}, 1, "auth: key store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runCmd(context.Background(), tc.args...)
			assert.Equal(t, tc.wantCode, code)
			assert.Contains(t, errOut, tc.wantErr)
			if tc.name != "bad flag" { // the flag package prints the usage
				assert.Equal(t, 1, strings.Count(strings.TrimSpace(strings.Split(errOut, "\n\n")[0]), "\n")+1, "one line: %s", errOut)
			}
		})
	}
	_, err = os.Stat("all.creds")
	assert.ErrorIs(t, err, os.ErrNotExist, "no file left for a refused id")
	// Nor an authority made for it (a new user's input: the keys were
	// made in a new data directory before the id was refused).
	fresh := filepath.Join(t.TempDir(), "data")
	code, _, _ = runCmd(context.Background(), "agent", "add", "bad id!", "--data", fresh)
	assert.Equal(t, 2, code)
	assert.NoDirExists(t, fresh)
}

// A NATS listener other machines can reach is refused without --auth, in
// one line, before anything starts.
func TestRun_ServeRefusesOpenNonLoopback(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:4999", ":4999", "[::]:4999", "192.0.2.1:4999"} {
		t.Run(listen, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			code, _, errOut := runCmd(context.Background(), "serve", "--data", dir, "--nats-listen", listen, "--http-listen", "127.0.0.1:0")
			assert.Equal(t, 2, code, "bad usage")
			assert.Equal(t, "codi2: --nats-listen "+listen+" is not a loopback address: add --auth (credentials from `codi2 agent add`) or listen on 127.0.0.1\n", errOut)
			assert.NoDirExists(t, dir, "nothing started")
		})
	}
	code, _, errOut := runCmd(context.Background(), "serve", "--ws-listen", "0.0.0.0:4998", "--http-listen", "127.0.0.1:0")
	assert.Equal(t, 2, code, "bad usage")
	assert.Contains(t, errOut, "--ws-listen 0.0.0.0:4998 is not a loopback address")
	code, _, errOut = runCmd(context.Background(), "serve", "--tls-cert", "c.pem", "--http-listen", "127.0.0.1:0")
	assert.Equal(t, 2, code, "bad usage")
	assert.Contains(t, errOut, "--tls-cert and --tls-key go together")
	assert.True(t, bus.IsLoopback("localhost:1"))
	assert.True(t, bus.IsLoopback("[::1]:1"))
	assert.False(t, bus.IsLoopback("nonsense"))
}

// serve --auth with TLS: an agent with credentials over TLS reaches the
// services (the audit service's own connection is TLS too); without TLS
// or without credentials nobody connects; `audit verify --creds` works;
// the log never holds a secret.
func TestRun_ServeAuthTLS(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(t.TempDir(), "agent-1.creds")
	code, _, errOut := runCmd(context.Background(), "agent", "add", "agent-1", "--data", dir, "--out", creds)
	require.Equal(t, 0, code, errOut)
	certFile, keyFile, pool := bustest.SelfSigned(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs proctest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data", dir, "--nats-listen", "127.0.0.1:-1", "--http-listen", "127.0.0.1:0",
			"--log-format", "json", "--log-level", "debug", "--auth", "--tls-cert", certFile, "--tls-key", keyFile}, &proctest.Buffer{}, &logs)
	}()
	ready := readyLine(t, &logs, done)
	assert.Equal(t, true, ready["auth"])
	url := ready["nats"].(string)

	nc, err := nats.Connect(url, bus.Credentials(creds), nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	require.NoError(t, err)
	defer nc.Close()
	sc, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	_, err = sc.Apply(rctx, "task", "T-1", state.Command{Op: state.OpPut, Fields: map[string]any{"status": "open"}})
	require.NoError(t, err)
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	_, err = ac.LogAndWait(rctx, "agent-1", "note", []byte(`{}`))
	require.NoError(t, err, "the audit service (over TLS) committed it")

	_, err = nats.Connect(url, bus.Credentials(creds), nats.MaxReconnects(0))
	require.Error(t, err, "TLS is required")
	_, err = nats.Connect(url, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}), nats.MaxReconnects(0))
	require.ErrorIs(t, err, nats.ErrAuthorization)

	cancel()
	require.Equal(t, 0, <-done, logs.String())
	data, _ := os.ReadFile(creds)
	for _, line := range strings.Split(string(data), "\n") {
		if len(line) > 40 && !strings.HasPrefix(line, "-") && !strings.HasPrefix(line, "*") {
			assert.NotContains(t, logs.String(), line, "a secret from the credentials file in the log")
		}
	}
	seed, err := os.ReadFile(filepath.Join(dir, "auth", "account.nk"))
	require.NoError(t, err)
	assert.NotContains(t, logs.String(), strings.TrimSpace(string(seed)))
	assert.NotContains(t, logs.String(), "NATS is open")
	assert.Contains(t, logs.String(), "auth on: clients need credentials from `codi2 agent add --data "+dir+"`")
}

// The verbs that talk to a server take --creds (or CODI2_CREDS).
func TestRun_AuditVerifyCreds(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(t.TempDir(), "dash.creds")
	code, _, errOut := runCmd(context.Background(), "agent", "add", "dash", "--role", "observer", "--data", dir, "--out", creds)
	require.Equal(t, 0, code, errOut)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs proctest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data", dir, "--nats-listen", "127.0.0.1:-1", "--http-listen", "127.0.0.1:0",
			"--log-format", "json", "--auth"}, &proctest.Buffer{}, &logs)
	}()
	url := readyLine(t, &logs, done)["nats"].(string)
	agentCreds := filepath.Join(t.TempDir(), "agent-1.creds")
	code, _, errOut = runCmd(ctx, "agent", "add", "agent-1", "--data", dir, "--out", agentCreds)
	require.Equal(t, 0, code, errOut)
	nc, err := nats.Connect(url, bus.Credentials(agentCreds))
	require.NoError(t, err)
	defer nc.Close()
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	defer lcancel()
	_, err = ac.LogAndWait(lctx, "agent-1", "note", []byte(`{}`))
	require.NoError(t, err)

	code, _, errOut = runCmd(ctx, "audit", "verify", "--nats-url", url, "--timeout", "5s")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "Authorization Violation")
	code, out, errOut := runCmd(ctx, "audit", "verify", "--nats-url", url, "--creds", creds)
	assert.Equal(t, 0, code, errOut)
	assert.Contains(t, out, `"ok":true`)
	t.Setenv("CODI2_CREDS", creds)
	code, _, errOut = runCmd(ctx, "audit", "export", "--nats-url", url)
	assert.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "exported 1 records")

	cancel()
	require.Equal(t, 0, <-done, logs.String())
}

// With --nats-url, a NATS server run by someone else trusts codi2's
// credentials through `codi2 agent server-config` (deploy/nats): the
// services connect with a service credential, agents are held to their
// permissions by that server, and a revoke takes effect on reload.
func TestRun_ServeExternalNATSWithAuth(t *testing.T) {
	data := t.TempDir()
	credsDir := t.TempDir()
	for _, c := range [][2]string{{"agent-1", "agent"}, {"codi2-server", "service"}} {
		code, _, errOut := runCmd(context.Background(), "agent", "add", c[0], "--role", c[1], "--data", data, "--out", filepath.Join(credsDir, c[0]+".creds"))
		require.Equal(t, 0, code, errOut)
	}
	natsDir := t.TempDir()
	writeConf := func() {
		code, out, errOut := runCmd(context.Background(), "agent", "server-config", "--data", data)
		require.Equal(t, 0, code, errOut)
		require.NoError(t, os.WriteFile(filepath.Join(natsDir, "codi2-auth.conf"), []byte(out), 0o600))
	}
	writeConf()
	conf := filepath.Join(natsDir, "nats-server.conf")
	require.NoError(t, os.WriteFile(conf, []byte("listen: 127.0.0.1:-1\njetstream { store_dir: "+strconv.Quote(filepath.Join(natsDir, "js"))+" }\ninclude ./codi2-auth.conf\n"), 0o600))
	opts, err := natsserver.ProcessConfigFile(conf)
	require.NoError(t, err)
	opts.NoSigs, opts.NoLog = true, true
	ext, err := natsserver.NewServer(opts)
	require.NoError(t, err)
	ext.Start()
	t.Cleanup(ext.Shutdown)
	require.True(t, ext.ReadyForConnections(10*time.Second))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs proctest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data", data, "--nats-url", ext.ClientURL(), "--creds", filepath.Join(credsDir, "codi2-server.creds"),
			"--http-listen", "127.0.0.1:0", "--log-format", "json",
			// The streams' limits derived from the disk (10 GiB each here)
			// need 30 GiB of the external server's store, which it sizes
			// from the free disk: set them, so the test does not depend on
			// how full the machine's disk is.
			"--msg-max-bytes", "256MiB", "--state-max-bytes", "256MiB", "--audit-stream-max-bytes", "256MiB"}, &proctest.Buffer{}, &logs)
	}()
	readyLine(t, &logs, done)

	violations := make(chan error, 10)
	cut := make(chan struct{}, 1)
	nc, err := nats.Connect(ext.ClientURL(), bus.Credentials(filepath.Join(credsDir, "agent-1.creds")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { cut <- struct{}{} }))
	require.NoError(t, err)
	defer nc.Close()
	sc, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	ev, err := sc.Apply(rctx, "task", "T-1", state.Command{Op: state.OpPut, Fields: map[string]any{"status": "open"}})
	require.NoError(t, err)
	assert.Equal(t, state.StatusApplied, ev.Status)
	require.NoError(t, nc.Publish("codi.state.cmd.task.T-1.agent-2", []byte(`{"op":"delete"}`)))
	select {
	case err := <-violations:
		require.ErrorIs(t, err, nats.ErrPermissionViolation)
	case <-time.After(5 * time.Second):
		t.Fatal("no permissions violation")
	}

	code, _, errOut := runCmd(ctx, "agent", "revoke", "agent-1", "--data", data)
	require.Equal(t, 0, code, errOut)
	writeConf()
	require.NoError(t, ext.Reload())
	select {
	case <-cut:
	case <-time.After(5 * time.Second):
		t.Fatal("agent-1 not cut off after the reload")
	}
	cancel()
	require.Equal(t, 0, <-done, logs.String())
}
