package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeAcked writes n state records and n mail messages through srv and
// returns once every one is acknowledged and the records are committed.
func writeAcked(t *testing.T, nc *nats.Conn, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	me, err := bus.NewAgent("agent-1", nc)
	require.NoError(t, err)
	for i := range n {
		_, err := sc.Apply(ctx, "task", "T-"+strconv.Itoa(i), state.Command{Op: state.OpPut, Fields: map[string]any{"n": i}})
		require.NoError(t, err)
		_, err = me.Send(ctx, "agent-2", "note", []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
}

// checkIntact checks that the n records and n messages of writeAcked are all
// there.
func checkIntact(t *testing.T, nc *nats.Conn, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sc, err := state.NewClient(nc, "agent-3")
	require.NoError(t, err)
	for i := range n {
		rec, err := sc.Get(ctx, "task", "T-"+strconv.Itoa(i), 0)
		require.NoError(t, err, "record %d", i)
		assert.Equal(t, uint64(1), rec.Rev)
	}
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	st, err := js.Stream(ctx, bus.StreamMsg)
	require.NoError(t, err)
	assert.Equal(t, uint64(n), st.CachedInfo().State.Msgs, "every acknowledged message is still in CODI_MSG")
}

// Issue 11, input 1: a second `codi2 serve` on the same --data (other
// ports) is refused before it opens anything there, naming the first one's
// pid, and the first one's data is intact after its restart.
func TestServe_SameDataDir_Refused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := proctest.Build(t)
	first := proctest.Start(t, bin, t.TempDir(), 0)
	const n = 200
	writeAcked(t, first.Connect(t), n)

	for range 3 {
		code, out := proctest.Run(t, bin, "serve", "--data", first.DataDir, "--nats-listen", "127.0.0.1:-1",
			"--http-listen", "127.0.0.1:0", "--log-format", "json")
		assert.Equal(t, 1, code, out)
		assert.Contains(t, out, "locked by process "+strconv.Itoa(first.PID()), out)
		assert.NotContains(t, out, "JetStream", "nothing in the data directory was opened")
	}

	first = first.Restart(t)
	checkIntact(t, first.Connect(t), n)
}

// Issue 11, input 2: a second `codi2 serve` against the NATS another one
// serves is refused, naming the first; the first's consumer and services
// are untouched.
func TestServe_SameNATS_Refused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := proctest.Build(t)
	first := proctest.Start(t, bin, t.TempDir(), 0)
	nc := first.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	consumerCreated := func() time.Time {
		c, err := js.Consumer(ctx, bus.StreamState, state.DefaultConsumer)
		require.NoError(t, err)
		return c.CachedInfo().Created
	}
	before := consumerCreated()

	code, out := proctest.Run(t, bin, "serve", "--data", t.TempDir(), "--nats-url", first.URL,
		"--http-listen", "127.0.0.1:0", "--log-format", "json")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "another codi2 instance")
	assert.Contains(t, out, "pid "+strconv.Itoa(first.PID()))
	assert.Contains(t, out, first.DataDir)

	assert.Equal(t, before, consumerCreated(), "the live codi-state consumer was not replaced")
	for _, svc := range []string{"codi-state", "codi-audit"} {
		assert.Equal(t, 1, countServices(t, nc, svc), svc)
	}
	writeAcked(t, nc, 5)
	checkIntact(t, nc, 5)
}

// countServices counts the instances of the micro service name that answer
// a ping.
func countServices(t *testing.T, nc *nats.Conn, name string) int {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	require.NoError(t, err)
	defer sub.Unsubscribe()
	subj, err := micro.ControlSubject(micro.PingVerb, name, "")
	require.NoError(t, err)
	require.NoError(t, nc.PublishRequest(subj, inbox, nil))
	n := 0
	for {
		if _, err := sub.NextMsg(500 * time.Millisecond); err != nil {
			return n
		}
		n++
	}
}

// Issue 11, input 9: from the moment a client can connect, every request to
// the services gets an answer (a result or a 503), never "no responders":
// clients hammer both services while the server restarts.
func TestServe_Restart_EveryRequestAnswered(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	srv := proctest.Start(t, proctest.Build(t), t.TempDir(), 0)
	nc := srv.Connect(t)
	writeAcked(t, nc, 1)

	var ok, unavailable, noResponders, other atomic.Int64
	var lastNoResponders atomic.Value
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, subj := range []string{"codi.state.get.task.T-0", subjects.StateStatus, subjects.AuditStatus, subjects.AuditQuery} {
		// Each requester on a connection of its own, reconnecting quickly.
		rc := srv.Connect(t)
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := rc.Request(subj, nil, time.Second)
				switch {
				case errors.Is(err, nats.ErrNoResponders):
					noResponders.Add(1)
					lastNoResponders.Store(subj + " at " + time.Now().UTC().Format(time.RFC3339Nano))
				case err != nil:
					other.Add(1) // disconnected, or no server yet: not an answer from codi2
					time.Sleep(time.Millisecond)
				case resp.Header.Get(micro.ErrorCodeHeader) == "503":
					unavailable.Add(1)
				case resp.Header.Get(micro.ErrorCodeHeader) == "":
					ok.Add(1)
				default:
					t.Errorf("%s: %s %s", subj, resp.Header.Get(micro.ErrorCodeHeader), resp.Header.Get(micro.ErrorHeader))
				}
			}
		})
	}
	for range 3 {
		before := ok.Load()
		require.Eventually(t, func() bool { return ok.Load() > before+100 }, 30*time.Second, time.Millisecond)
		t.Logf("restart at %s", time.Now().UTC().Format(time.RFC3339Nano))
		require.Equal(t, 0, srv.Stop(30*time.Second))
		t.Logf("stopped at %s", time.Now().UTC().Format(time.RFC3339Nano))
		srv = proctest.Start(t, srv.Bin(), srv.DataDir, srv.Port())
		t.Logf("ready at %s", time.Now().UTC().Format(time.RFC3339Nano))
	}
	before := ok.Load()
	require.Eventually(t, func() bool { return ok.Load() > before+100 }, 30*time.Second, time.Millisecond)
	cancel()
	wg.Wait()
	t.Logf("answered %d, 503 %d, no responders %d, no answer (disconnected) %d", ok.Load(), unavailable.Load(), noResponders.Load(), other.Load())
	assert.Zero(t, noResponders.Load(), "no responders, last on %v; the server's last log:\n%s", lastNoResponders.Load(), srv.Logs())
}

// Issue 11, input 3: codi2 starts on a small disk that holds its data (the
// stream limits are derived from it and logged), and explicit limits that
// do not fit are refused with the numbers.
func TestServe_SmallDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := proctest.SmallDisk(t, 64<<20)
	bin := proctest.Build(t)
	srv := proctest.Start(t, bin, dir, 0)
	assert.Contains(t, srv.Logs(), `"msg_max_bytes":8388608`, "an eighth of the 64 MiB disk")
	writeAcked(t, srv.Connect(t), 20)
	require.Equal(t, 0, srv.Stop(30*time.Second))

	code, out := proctest.Run(t, bin, "serve", "--data", dir, "--nats-listen", "127.0.0.1:-1",
		"--http-listen", "127.0.0.1:0", "--audit-stream-max-bytes", "1GiB")
	assert.Equal(t, 1, code, out)
	for _, want := range []string{"CODI_AUDIT 1 GiB", "add up to", "free of 64 MiB", "--audit-stream-max-bytes"} {
		assert.Contains(t, out, want)
	}
	assert.False(t, strings.Contains(out, "insufficient storage resources"), out)

	srv = proctest.Start(t, bin, dir, 0, "--msg-max-bytes", "4MiB")
	assert.Contains(t, srv.Logs(), `"msg_max_bytes":4194304`)
	checkIntact(t, srv.Connect(t), 20)
}

// fillDisk writes a file in dir until the disk is full and returns its
// path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			require.ErrorIs(t, err, syscall.ENOSPC)
			return path
		}
	}
}

// getJSON reads url and returns its status code and decoded body.
func getJSON(t *testing.T, url string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return resp.StatusCode, body
}

// Issue 11, input 3: when the disk fills, CODI_AUDIT stops writing;
// /healthz and /readyz report it while it lasts, and once space returns the
// stream writes again by itself, without a restart, and nothing
// acknowledged is lost.
func TestServe_DiskFull_AuditRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := proctest.SmallDisk(t, 64<<20)
	srv := proctest.Start(t, proctest.Build(t), dir, 0)
	web := srv.HTTP(t)
	nc := srv.Connect(t)
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var acked []string // payloads of acknowledged and committed events
	sent := 0
	logEvent := func(timeout time.Duration, pad int) error {
		lctx, lcancel := context.WithTimeout(ctx, timeout)
		defer lcancel()
		sent++
		data := `{"n":` + strconv.Itoa(sent) + `,"pad":"` + strings.Repeat("x", pad) + `"}`
		_, err := ac.LogAndWait(lctx, "agent-1", "note", []byte(data))
		if err == nil {
			acked = append(acked, data)
		}
		return err
	}
	require.NoError(t, logEvent(10*time.Second, 0))

	filler := fillDisk(t, dir)
	// Larger than what the stream's last page has left.
	require.Error(t, logEvent(time.Second, 64<<10), "nothing is acknowledged on a full disk")
	require.Eventually(t, func() bool {
		code, body := getJSON(t, web+"/healthz")
		return code == http.StatusServiceUnavailable && strings.Contains(body["status"].(string), "CODI_AUDIT cannot write")
	}, 20*time.Second, 50*time.Millisecond, "/healthz reports the stream that cannot write:\n%s", srv.Logs())
	code, body := getJSON(t, web+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, fmt.Sprint(body["problems"]), "CODI_AUDIT cannot write")

	require.NoError(t, os.Remove(filler))
	require.Eventually(t, func() bool { return logEvent(2*time.Second, 64<<10) == nil }, 60*time.Second, 10*time.Millisecond,
		"CODI_AUDIT writes again without a restart")
	require.Eventually(t, func() bool {
		code, _ := getJSON(t, web+"/readyz")
		return code == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond)
	code, body = getJSON(t, web+"/healthz")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ok", body["status"])

	// Every acknowledged event is in the log once, and the chain holds.
	res, err := ac.Verify(ctx, audit.VerifyRequest{})
	require.NoError(t, err)
	assert.True(t, res.OK)
	page, err := ac.Query(ctx, audit.Query{Source: "agent-1"})
	require.NoError(t, err)
	seen := map[string]int{}
	for _, r := range page.Records {
		seen[string(r.Data)]++
	}
	for _, data := range acked {
		assert.Equal(t, 1, seen[data], data)
	}
	assert.Contains(t, srv.Logs(), "JetStream reloaded")
}
