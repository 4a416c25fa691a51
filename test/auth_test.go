package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The tests in this file run `codi2 serve --auth` with credentials made by
// `codi2 agent add`, and speak to it over TCP as agents would: nats.go with
// the credentials file, the platform's Go clients, and the nats CLI.

// authServer is a codi2 serve --auth and the credentials files it issued.
type authServer struct {
	*proctest.Server
	creds map[string]string // id -> credentials file
}

// startAuthCodi2 issues credentials for ids (id -> role) with the built
// binary's `agent add`, runs `codi2 serve --auth` on the same data
// directory, and waits until the services answer an admin.
func startAuthCodi2(t *testing.T, ids map[string]string) *authServer {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: builds and runs codi2 serve")
	}
	bin := proctest.Build(t)
	dir := t.TempDir()
	s := &authServer{creds: map[string]string{}}
	ids["admin"] = "admin"
	for id, role := range ids {
		file := filepath.Join(t.TempDir(), id+".creds")
		out, err := exec.Command(bin, "agent", "add", id, "--role", role, "--data", dir, "--out", file).CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), file)
		s.creds[id] = file
	}
	s.Server = proctest.Start(t, bin, dir, 0, "--auth")
	nc := s.dial(t, "admin")
	for _, subj := range []string{subjects.StateStatus, subjects.AuditStatus} {
		require.Eventually(t, func() bool {
			_, err := nc.Request(subj, nil, time.Second)
			return err == nil
		}, 30*time.Second, 20*time.Millisecond, "%s answers\n%s", subj, s.Logs())
	}
	t.Cleanup(func() {
		if code := s.Stop(20 * time.Second); code != 0 {
			t.Errorf("codi2 serve exited %d on SIGTERM\n%s", code, s.Logs())
		}
	})
	return s
}

// dial connects as id with its credentials, closed when the test ends.
func (s *authServer) dial(t *testing.T, id string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	require.Contains(t, s.creds, id)
	nc, err := nats.Connect(s.URL, append([]nats.Option{nats.Name(id), bus.Credentials(s.creds[id]), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// violations records the async errors of a connection; expect waits for a
// permissions violation naming subject.
type violations struct {
	mu   sync.Mutex
	errs []error
}

func (v *violations) option() nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		v.mu.Lock()
		v.errs = append(v.errs, err)
		v.mu.Unlock()
	})
}

func (v *violations) expect(t *testing.T, op, subject string) {
	t.Helper()
	want := fmt.Sprintf("Permissions Violation for %s to %q", op, subject)
	require.Eventually(t, func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, err := range v.errs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want) {
				return true
			}
		}
		return false
	}, 5*time.Second, 5*time.Millisecond, "want %s", want)
}

// TestAuth_Attacks runs one forbidden action per subtest with real
// credentials over TCP, each refused with a permissions violation, while
// agent-3 keeps sending mail to agent-1, claiming state and writing audit
// events; afterwards everything agent-3 did is there exactly once and
// nothing an attacker tried had an effect.
func TestAuth_Attacks(t *testing.T) {
	s := startAuthCodi2(t, map[string]string{"agent-1": "agent", "agent-2": "agent", "agent-3": "agent", "dash": "observer"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Legitimate traffic: agent-3 to agent-1, before and after every attack.
	lnc := s.dial(t, "agent-3")
	legit, err := bus.NewAgent("agent-3", lnc)
	require.NoError(t, err)
	lstate, err := state.NewClient(lnc, "agent-3")
	require.NoError(t, err)
	laudit, err := audit.NewClient(lnc)
	require.NoError(t, err)
	sent := 0
	carryOn := func(t *testing.T) {
		t.Helper()
		sent++
		_, err := legit.Send(ctx, "agent-1", "note", fmt.Appendf(nil, "legit-%d", sent))
		require.NoError(t, err)
		_, err = lstate.Apply(ctx, "task", fmt.Sprintf("T-%d", sent), state.Command{Op: state.OpPut, Fields: map[string]any{"n": sent}})
		require.NoError(t, err)
		_, err = laudit.LogAndWait(ctx, "agent-3", "note", fmt.Appendf(nil, `{"n":%d}`, sent))
		require.NoError(t, err)
	}

	// agent-1's inbox consumer exists and holds mail: the target of the
	// consumer attacks.
	a1, err := bus.NewAgent("agent-1", s.dial(t, "agent-1"))
	require.NoError(t, err)
	carryOn(t)
	require.NoError(t, a1.Receive(ctx, bus.ReceiveConfig{Max: 1}, func(context.Context, bus.Message) error { return nil }))
	carryOn(t)

	var v, ov violations
	attacker := s.dial(t, "agent-2", v.option())
	observer := s.dial(t, "dash", ov.option())
	pub := func(t *testing.T, subject string) {
		t.Helper()
		require.NoError(t, attacker.Publish(subject, []byte(`{}`)))
		v.expect(t, "Publish", subject)
	}
	sub := func(t *testing.T, subject string) {
		t.Helper()
		_, err := attacker.SubscribeSync(subject)
		require.NoError(t, err)
		v.expect(t, "Subscription", subject)
	}
	for _, tc := range []struct {
		name   string
		attack func(t *testing.T)
	}{
		{"mail as another agent", func(t *testing.T) { pub(t, "codi.msg.agent-1.agent-3.note") }},
		{"rpc as another agent", func(t *testing.T) { pub(t, "codi.rpc.agent-1.agent-3.ping") }},
		{"state command as another actor", func(t *testing.T) { pub(t, "codi.state.cmd.task.T-1.agent-3") }},
		{"audit event as another agent", func(t *testing.T) { pub(t, "codi.audit.log.agent-3.note") }},
		{"audit event as codi-state", func(t *testing.T) { pub(t, "codi.audit.log.codi-state.state.task") }},
		{"stream delete", func(t *testing.T) { pub(t, "$JS.API.STREAM.DELETE."+bus.StreamMsg) }},
		{"stream purge", func(t *testing.T) { pub(t, "$JS.API.STREAM.PURGE."+bus.StreamState) }},
		{"stream update", func(t *testing.T) { pub(t, "$JS.API.STREAM.UPDATE."+bus.StreamAudit) }},
		{"message delete", func(t *testing.T) { pub(t, "$JS.API.STREAM.MSG.DELETE."+bus.StreamMsg) }},
		{"service consumer delete", func(t *testing.T) { pub(t, "$JS.API.CONSUMER.DELETE."+bus.StreamState+"."+state.DefaultConsumer) }},
		{"inbox consumer delete", func(t *testing.T) { pub(t, "$JS.API.CONSUMER.DELETE."+bus.StreamMsg+".agent-1") }},
		{"another agent's inbox read", func(t *testing.T) { pub(t, "$JS.API.CONSUMER.MSG.NEXT."+bus.StreamMsg+".agent-1") }},
		{"another agent's inbox created", func(t *testing.T) { pub(t, "$JS.API.CONSUMER.CREATE."+bus.StreamMsg+".agent-1") }},
		{"another agent's inbox acked", func(t *testing.T) { pub(t, "$JS.ACK."+bus.StreamMsg+".agent-1.1.3.3.1764518400000000000.0") }},
		{"a service's consumer read", func(t *testing.T) { pub(t, "$JS.API.CONSUMER.MSG.NEXT."+bus.StreamAudit+"."+audit.ConsumerName) }},
		{"fake state event", func(t *testing.T) { pub(t, "codi.state.evt.task.T-1") }},
		{"fake state watermark", func(t *testing.T) { pub(t, subjects.StateCommitted) }},
		{"fake audit watermark", func(t *testing.T) { pub(t, subjects.AuditCommitted) }},
		{"another agent's mail read live", func(t *testing.T) { sub(t, "codi.msg.agent-1.>") }},
		{"another agent's calls", func(t *testing.T) { sub(t, "codi.rpc.agent-1.>") }},
		{"other reply inboxes", func(t *testing.T) { sub(t, "_INBOX.>") }},
		{"impostor state service", func(t *testing.T) { sub(t, subjects.StateGetWildcard) }},
		{"impostor audit service", func(t *testing.T) { sub(t, subjects.AuditQuery) }},
		{"impostor micro service", func(t *testing.T) {
			_, err := micro.AddService(attacker, micro.Config{Name: "codi-state", Version: "0.0.1",
				Endpoint: &micro.EndpointConfig{Subject: "codi.state.status", Handler: micro.HandlerFunc(func(micro.Request) {})}})
			if err == nil {
				v.expect(t, "Subscription", "codi.state.status")
			}
		}},
		{"observer sends mail", func(t *testing.T) {
			require.NoError(t, observer.Publish("codi.msg.agent-1.dash.note", nil))
			ov.expect(t, "Publish", "codi.msg.agent-1.dash.note")
		}},
		{"observer sends a state command", func(t *testing.T) {
			require.NoError(t, observer.Publish("codi.state.cmd.task.T-1.dash", nil))
			ov.expect(t, "Publish", "codi.state.cmd.task.T-1.dash")
		}},
		{"observer writes audit", func(t *testing.T) {
			require.NoError(t, observer.Publish("codi.audit.log.dash.note", nil))
			ov.expect(t, "Publish", "codi.audit.log.dash.note")
		}},
		{"observer opens an inbox consumer", func(t *testing.T) {
			require.NoError(t, observer.Publish("$JS.API.CONSUMER.CREATE."+bus.StreamMsg+".dash", nil))
			ov.expect(t, "Publish", "$JS.API.CONSUMER.CREATE."+bus.StreamMsg+".dash")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.attack(t)
			carryOn(t)
			assert.True(t, attacker.IsConnected(), "a refused action does not cost the connection")
		})
	}

	// A request whose reply subject names a JetStream API call or another
	// agent's mail cannot make a service act for the attacker: the
	// service's reply is refused (its connection may not publish there).
	for _, reply := range []string{"$JS.API.STREAM.PURGE." + bus.StreamMsg, "codi.msg.agent-1.agent-3.note"} {
		require.NoError(t, attacker.PublishRequest("codi.state.get.task.T-1", reply, nil))
		require.NoError(t, attacker.PublishRequest(subjects.AuditStatus, reply, nil))
	}
	carryOn(t)

	// Nobody without credentials, or with credentials of another
	// authority, gets in.
	_, err = nats.Connect(s.URL, nats.MaxReconnects(0))
	require.ErrorIs(t, err, nats.ErrAuthorization)

	// Everything agent-3 did is there, once; nothing the attackers tried
	// changed anything.
	var got []string
	require.NoError(t, a1.Receive(ctx, bus.ReceiveConfig{UntilIdle: true}, func(_ context.Context, m bus.Message) error {
		assert.Equal(t, "agent-3", m.From)
		got = append(got, string(m.Data))
		return nil
	}))
	require.Len(t, got, sent-1, "agent-1 got every legitimate message after the first, once")
	for i, d := range got {
		assert.Equal(t, fmt.Sprintf("legit-%d", i+2), d)
	}
	admin := s.dial(t, "admin")
	js, err := jetstream.New(admin)
	require.NoError(t, err)
	for _, name := range []string{bus.StreamMsg, bus.StreamState, bus.StreamAudit} {
		st, err := js.Stream(ctx, name)
		require.NoError(t, err, "stream %s still there", name)
		assert.Equal(t, uint64(1), st.CachedInfo().State.FirstSeq, "%s: nothing purged or deleted", name)
	}
	msgs, err := js.Stream(ctx, bus.StreamMsg)
	require.NoError(t, err)
	assert.Equal(t, uint64(sent), msgs.CachedInfo().State.Msgs, "CODI_MSG holds exactly agent-3's mail")
	for _, c := range [][2]string{{bus.StreamState, state.DefaultConsumer}, {bus.StreamAudit, audit.ConsumerName}, {bus.StreamMsg, "agent-1"}} {
		_, err := js.Consumer(ctx, c[0], c[1])
		assert.NoError(t, err, "consumer %s on %s still there", c[1], c[0])
	}
	dstate, err := state.NewClient(s.dial(t, "dash"), "dash")
	require.NoError(t, err)
	res, err := dstate.List(ctx, "task", state.ListOptions{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, res.Records, sent)
	for _, r := range res.Records {
		assert.Equal(t, "agent-3", r.UpdatedBy)
		assert.Equal(t, uint64(1), r.Rev)
	}
	dau, err := audit.NewClient(s.dial(t, "dash"))
	require.NoError(t, err)
	recs, err := readAll(ctx, dau, audit.Query{})
	require.NoError(t, err)
	sources := map[string]int{}
	for _, r := range recs {
		sources[r.Source]++
	}
	assert.Equal(t, map[string]int{"agent-3": sent, "codi-state": sent}, sources, "the log holds agent-3's events and its commands, nothing else")
}

// TestAuth_FiveAgents runs ADR-028's story (the five agents scenario of
// TestE2E_FiveAgents_NoLostOrDuplicatedEvents) with auth on: every agent
// and the orchestrator with its own agent credentials, the dashboard as
// an observer.
func TestAuth_FiveAgents(t *testing.T) {
	ids := map[string]string{"orchestrator": "agent", "dashboard": "observer"}
	for i := range 5 {
		ids[fmt.Sprintf("agent-%d", i+1)] = "agent"
	}
	s := startAuthCodi2(t, ids)
	fiveAgents(t, func(t *testing.T, name string) *nats.Conn { return s.dial(t, name) })
}

// natsContext writes a nats CLI context named codi2 for id (server URL,
// credentials, inbox prefix) under a fresh XDG_CONFIG_HOME and returns
// the environment that selects it.
func natsContext(t *testing.T, s *authServer, id string) []string {
	t.Helper()
	home := t.TempDir()
	dir := filepath.Join(home, "nats", "context")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	ctxJSON := fmt.Sprintf(`{"url":%q,"creds":%q,"inbox_prefix":%q}`, s.URL, s.creds[id], subjects.InboxPrefix(id))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "codi2.json"), []byte(ctxJSON), 0o600))
	return []string{"XDG_CONFIG_HOME=" + home, "NATS_CONTEXT=codi2"}
}

// The README's nats CLI recipes run as written with auth on, as agent-1
// through a nats context that names its credentials and inbox prefix;
// agent-2's credentials cannot read agent-1's inbox with the same recipe.
func TestAuth_CLIRecipes(t *testing.T) {
	natsCLI(t)
	s := startAuthCodi2(t, map[string]string{"agent-1": "agent", "agent-2": "agent", "orchestrator": "agent"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	orch, err := bus.NewAgent("orchestrator", s.dial(t, "orchestrator"))
	require.NoError(t, err)
	for _, body := range []string{`{"task":"ADR-028"}`, `{"task":"ADR-029"}`} {
		_, err := orch.Send(ctx, "agent-1", "task.assign", []byte(body))
		require.NoError(t, err)
	}

	// agent-2 running agent-1's recipe: the open request and every next are
	// refused by the server (the loop then ends), and no mail is printed.
	out, _ := runRecipeEnv(t, "inbox", natsContext(t, s, "agent-2"))
	assert.Empty(t, nonEmptyLines(out), "agent-2 read agent-1's mail")
	out, err = runRecipeEnv(t, "inbox", natsContext(t, s, "agent-1"))
	require.NoError(t, err)
	assert.Equal(t, []string{`{"task":"ADR-028"}`, `{"task":"ADR-029"}`}, nonEmptyLines(out), out)

	out, err = runRecipeEnv(t, "outcome", natsContext(t, s, "agent-1"))
	require.NoError(t, err)
	assert.Contains(t, out, `"updated_by":"agent-1"`)
}

// runRecipeEnv runs a README recipe with sh and env added to the
// environment; it returns stdout, and an error holding stderr on failure.
func runRecipeEnv(t *testing.T, name string, env []string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", "-eu", "-c", recipe(t, name))
	cmd.Env = append(os.Environ(), append(env, "PATH="+filepath.Dir(natsCLI(t))+string(os.PathListSeparator)+os.Getenv("PATH"))...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return string(out), nil
}

// TestAuth_RevokeUnderLoad revokes agent-1 with `codi2 agent revoke` while
// it and two other agents send mail as fast as they can: agent-1 is cut
// off within a second, cannot connect again, and every message the
// others got a PubAck for is delivered exactly once.
func TestAuth_RevokeUnderLoad(t *testing.T) {
	s := startAuthCodi2(t, map[string]string{"agent-1": "agent", "agent-2": "agent", "agent-3": "agent", "sink": "agent"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cutOff := make(chan time.Time, 1)
	victim := s.dial(t, "agent-1", nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {
			select {
			case cutOff <- time.Now():
			default:
			}
		}))
	senders := map[string]*nats.Conn{"agent-1": victim, "agent-2": s.dial(t, "agent-2"), "agent-3": s.dial(t, "agent-3")}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]int{}
	for id, nc := range senders {
		a, err := bus.NewAgent(id, nc)
		require.NoError(t, err)
		wg.Go(func() {
			for n := 0; loadCtx.Err() == nil; n++ {
				sctx, cancel := context.WithTimeout(loadCtx, 2*time.Second)
				_, err := a.Send(sctx, "sink", "load", fmt.Appendf(nil, "%s-%d", id, n))
				cancel()
				if err == nil {
					mu.Lock()
					acked[id]++
					mu.Unlock()
				}
			}
		})
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return acked["agent-1"] > 50 && acked["agent-2"] > 50 && acked["agent-3"] > 50
	}, 20*time.Second, 5*time.Millisecond, "everyone sends")

	out, err := exec.Command(s.Bin(), "agent", "revoke", "agent-1", "--data", s.DataDir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	revoked := time.Now()
	var cutAt time.Time
	select {
	case cutAt = <-cutOff:
		assert.Less(t, cutAt.Sub(revoked), time.Second, "agent-1 cut off within a second of the revoke")
		t.Logf("agent-1 cut off %v after the revoke", cutAt.Sub(revoked).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("agent-1 still connected 5s after the revoke")
	}
	// The others keep going while agent-1 tries to come back.
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return acked["agent-2"] > 200 && acked["agent-3"] > 200
	}, 20*time.Second, 5*time.Millisecond)
	stopLoad()
	wg.Wait()
	assert.False(t, victim.IsConnected(), "agent-1 did not get back in")
	_, err = nats.Connect(s.URL, bus.Credentials(s.creds["agent-1"]), nats.MaxReconnects(0))
	require.ErrorIs(t, err, nats.ErrAuthorization, "a revoked credential cannot connect")

	sink, err := bus.NewAgent("sink", s.dial(t, "sink"))
	require.NoError(t, err)
	got := map[string]int{}
	seen := map[string]bool{}
	var lastOfVictim time.Time
	require.NoError(t, sink.Receive(ctx, bus.ReceiveConfig{UntilIdle: true}, func(_ context.Context, m bus.Message) error {
		assert.False(t, seen[string(m.Data)], "%s delivered twice", m.Data)
		seen[string(m.Data)] = true
		got[m.From]++
		if m.From == "agent-1" && m.Time.After(lastOfVictim) {
			lastOfVictim = m.Time
		}
		return nil
	}))
	// A publish the server had read before the cut is stored a moment
	// after it; agent-1 sends hundreds a second, so had it got back in, its
	// mail would go on being stored for the seconds the others kept going.
	t.Logf("agent-1's last message stored %v after the cut", lastOfVictim.Sub(cutAt).Round(time.Millisecond))
	assert.Less(t, lastOfVictim.Sub(cutAt), 500*time.Millisecond, "nothing of agent-1 stored after the messages in flight at the cut")
	assert.GreaterOrEqual(t, got["agent-1"], acked["agent-1"], "agent-1's acked messages from before the cut are delivered")
	for _, id := range []string{"agent-2", "agent-3"} {
		assert.GreaterOrEqual(t, got[id], acked[id], "%s: every acked message delivered", id)
		assert.LessOrEqual(t, got[id], acked[id]+1, "%s: at most the one in flight at the stop besides", id)
	}
	t.Logf("acked: agent-1 %d, agent-2 %d, agent-3 %d", acked["agent-1"], acked["agent-2"], acked["agent-3"])
}

// codi2As runs a verb of the built binary with id's credentials
// (CODI2_CREDS) and CODI2_AGENT set to agent.
func (s *authServer) codi2As(t *testing.T, id, agent string, args ...string) (string, string, int) {
	t.Helper()
	t.Setenv("CODI2_CREDS", s.creds[id])
	defer os.Unsetenv("CODI2_CREDS")
	return codi2(t, s.Bin(), s.URL, agent, args...)
}

// The agent command line with auth on: the ADR-028 story with each agent's
// CODI2_CREDS; an agent's credentials cannot act as another agent (the
// command fails, nothing is stored); a Claude Code hook with credentials
// delivers mail.
func TestAuth_CLIVerbs(t *testing.T) {
	s := startAuthCodi2(t, map[string]string{"orchestrator": "agent", "agent-2": "agent", "agent-3": "agent", "dash": "observer"})
	out, errs, code := s.codi2As(t, "orchestrator", "orchestrator", "send", "agent-2", "task.assign", `{"task":"ADR-028"}`)
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "sent task.assign to agent-2")
	out, errs, code = s.codi2As(t, "agent-2", "agent-2", "inbox")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `orchestrator -> agent-2 task.assign: {"task":"ADR-028"}`)
	out, errs, code = s.codi2As(t, "agent-2", "agent-2", "claim", "task", "ADR-028", "--ttl", "10m")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, "claimed task/ADR-028 rev 1 by agent-2")
	_, errs, code = s.codi2As(t, "agent-3", "agent-3", "claim", "task", "ADR-028")
	assert.Equal(t, 3, code, errs)
	assert.Contains(t, errs, "held by agent-2")

	// agent-3's credentials acting as agent-2: refused, nothing stored.
	_, _, code = s.codi2As(t, "agent-3", "agent-2", "release", "task", "ADR-028", "--rev", "1", "--timeout", "2s")
	assert.NotEqual(t, 0, code, "agent-3 cannot release agent-2's claim")
	_, _, code = s.codi2As(t, "agent-3", "agent-2", "send", "orchestrator", "done", "x", "--timeout", "2s")
	assert.NotEqual(t, 0, code, "agent-3 cannot send as agent-2")
	out, errs, code = s.codi2As(t, "dash", "dash", "get", "task", "ADR-028", "--json")
	require.Equal(t, 0, code, errs)
	assert.Contains(t, out, `"updated_by":"agent-2"`, "the claim stands")
	assert.Contains(t, out, `"rev":1`)
	_, _, code = s.codi2As(t, "dash", "dash", "send", "agent-2", "note", "x", "--timeout", "2s")
	assert.NotEqual(t, 0, code, "an observer sends nothing")

	out, errs, code = s.codi2As(t, "orchestrator", "orchestrator", "send", "agent-2", "note", "welcome")
	require.Equal(t, 0, code, errs+out)
	t.Setenv("CODI2_CREDS", s.creds["agent-2"])
	out, code = runHook(t, s.Bin(), s.URL, "agent-2", "SessionStart",
		`{"session_id":"s-1","transcript_path":"/tmp/t.jsonl","cwd":"/tmp","hook_event_name":"SessionStart","source":"startup"}`)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "welcome", "the hook delivered mail with credentials")
}

// `codi2 mcp --creds` with auth on: the tools act as the credential's
// agent; a server started for another agent id with these credentials
// cannot claim.
func TestAuth_MCP(t *testing.T) {
	s := startAuthCodi2(t, map[string]string{"agent-2": "agent"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	connect := func(agent string) *mcp.ClientSession {
		cmd := exec.Command(s.Bin(), "mcp", "--agent", agent, "--nats-url", s.URL, "--creds", s.creds["agent-2"], "--timeout", "2s")
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil).Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = cs.Close() })
		return cs
	}
	res, err := connect("agent-2").CallTool(ctx, &mcp.CallToolParams{Name: "claim", Arguments: map[string]any{"kind": "task", "id": "ADR-028"}})
	require.NoError(t, err)
	require.False(t, res.IsError, res.Content[0].(*mcp.TextContent).Text)
	res, err = connect("agent-3").CallTool(ctx, &mcp.CallToolParams{Name: "claim", Arguments: map[string]any{"kind": "task", "id": "ADR-029"}})
	require.NoError(t, err)
	assert.True(t, res.IsError, "agent-2's credentials cannot claim as agent-3")
}
