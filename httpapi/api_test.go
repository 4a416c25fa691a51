package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/httpapi"
	"github.com/codi2/codi2/internal/server"
	"github.com/codi2/codi2/internal/servertest"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// env is a whole server, its HTTP side behind httptest, and an agent's
// clients over TCP.
type env struct {
	srv  *server.Server
	http *httptest.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	sc   *state.Client
	ac   *audit.Client
}

func start(t testing.TB) *env {
	t.Helper()
	srv := servertest.Start(t, false)
	hs := httptest.NewServer(srv.HTTP())
	t.Cleanup(func() {
		srv.HTTP().Close()
		hs.Close()
	})
	nc, err := nats.Connect(srv.Bus().ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	sc, err := state.NewClient(nc, "agent-1")
	require.NoError(t, err)
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	return &env{srv: srv, http: hs, nc: nc, js: js, sc: sc, ac: ac}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// get requests path and returns the status and body.
func (e *env) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(e.http.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

// getJSON requests path, wants status and decodes the body into v.
func (e *env) getJSON(t *testing.T, path string, status int, v any) {
	t.Helper()
	code, body := e.get(t, path)
	require.Equal(t, status, code, "GET %s: %s", path, body)
	require.NoError(t, json.Unmarshal(body, v), "GET %s: %s", path, body)
}

// wantError checks that path answers status with a JSON error whose text
// contains want.
func (e *env) wantError(t *testing.T, path string, status int, want string) {
	t.Helper()
	var apiErr struct {
		Error string `json:"error"`
		Code  int    `json:"code"`
	}
	e.getJSON(t, path, status, &apiErr)
	assert.Equal(t, status, apiErr.Code, path)
	assert.Contains(t, apiErr.Error, want, path)
}

// putRaw publishes a put command for kind/id as agent-1 and returns its
// PubAck sequence, without waiting for the service.
func (e *env) putRaw(t *testing.T, kind, id string, fields map[string]any, ttl time.Duration) uint64 {
	t.Helper()
	subj, err := subjects.StateCmd(kind, id, "agent-1")
	require.NoError(t, err)
	if fields == nil {
		fields = map[string]any{}
	}
	cmd := state.Command{Op: state.OpPut, TTL: ttl, Fields: fields}
	data, err := json.Marshal(cmd)
	require.NoError(t, err)
	ack, err := e.js.Publish(ctxT(t), subj, data)
	require.NoError(t, err)
	return ack.Sequence
}

func TestAPI_State_GetWithMinSeqSeesAWriteAtOnce(t *testing.T) {
	e := start(t)
	for i := 0; i < 5; i++ {
		seq := e.putRaw(t, "task", "T-1", map[string]any{"n": i}, 0)
		var rec state.Record
		e.getJSON(t, "/v1/state/task/T-1?min_seq="+itoa(seq), http.StatusOK, &rec)
		assert.Equal(t, uint64(i+1), rec.Rev)
		assert.Equal(t, seq, rec.Seq)
		assert.JSONEq(t, itoa(uint64(i)), string(rec.Fields["n"]))
	}
	// An escaped id, URL-encoded in the path.
	id := subjects.Escape("src/main.go")
	seq := e.putRaw(t, "file", id, map[string]any{"x": 1}, 0)
	var rec state.Record
	e.getJSON(t, "/v1/state/file/"+url.PathEscape(id)+"?min_seq="+itoa(seq), http.StatusOK, &rec)
	assert.Equal(t, id, rec.ID)
}

func TestAPI_State_Errors(t *testing.T) {
	e := start(t)
	e.wantError(t, "/v1/state/task/nope", http.StatusNotFound, "")
	e.wantError(t, "/v1/state/Task/x", http.StatusBadRequest, "kind")
	e.wantError(t, "/v1/state/task/x?min_seq=abc", http.StatusBadRequest, "min_seq")
	e.wantError(t, "/v1/state/task/x?min_seq=-1", http.StatusBadRequest, "min_seq")
	e.wantError(t, "/v1/state/task/x?min_seq=1&min_seq=2", http.StatusBadRequest, "2 times")
	e.wantError(t, "/v1/state/task/x?color=red", http.StatusBadRequest, "unknown parameter")
	e.wantError(t, "/v1/state/task/a%25zz", http.StatusBadRequest, "")
	e.wantError(t, "/v1/state/task?limit=ten", http.StatusBadRequest, "limit")
	// A parameter the service does not know is its 400.
	e.wantError(t, "/v1/state/task?color=red", http.StatusBadRequest, "color")
	e.wantError(t, "/v1/state/Task", http.StatusBadRequest, "kind")
	e.wantError(t, "/v1/nothing", http.StatusNotFound, "no such endpoint")
	// A min_seq the service will not reach in time is its 504.
	e.wantError(t, "/v1/state/task/x?min_seq=999999", http.StatusGatewayTimeout, "")
}

func TestAPI_State_ListAndReservations(t *testing.T) {
	e := start(t)
	var last uint64
	for _, id := range []string{"a-1", "a-2", "b-1"} {
		last = e.putRaw(t, "task", id, map[string]any{"status": "open"}, 0)
	}
	_, err := e.sc.Get(ctxT(t), "task", "a-1", last)
	require.NoError(t, err)
	res, err := e.sc.Reserve(ctxT(t), "proj", []string{"src/**"}, state.ReserveOptions{TTL: time.Minute})
	require.NoError(t, err)

	var page state.ListResult
	e.getJSON(t, "/v1/state/task?limit=2", http.StatusOK, &page)
	require.Len(t, page.Records, 2)
	assert.Equal(t, "a-2", page.NextAfter)
	e.getJSON(t, "/v1/state/task?after="+page.NextAfter, http.StatusOK, &page)
	require.Len(t, page.Records, 1)
	assert.Equal(t, "b-1", page.Records[0].ID)
	e.getJSON(t, "/v1/state/task?prefix=a-", http.StatusOK, &page)
	assert.Len(t, page.Records, 2)

	e.getJSON(t, "/v1/reservations", http.StatusOK, &page)
	require.Len(t, page.Records, 1)
	assert.Equal(t, res[0].ID, page.Records[0].ID)
	assert.NotNil(t, page.Records[0].ExpiresAt)
}

// The list's filters over HTTP: where as a JSON object or as
// where.FIELD=VALUE, held as a boolean (both were sent as strings, which
// the service refused, so only the time filters worked).
func TestAPI_State_ListFilters(t *testing.T) {
	e := start(t)
	e.putRaw(t, "task", "t-1", map[string]any{"status": "open", "n": 1}, 0)
	e.putRaw(t, "task", "t-2", map[string]any{"status": "done", "n": 2}, 0)
	last := e.putRaw(t, "task", "t-3", map[string]any{"status": "open", "n": 2}, time.Minute)
	_, err := e.sc.Get(ctxT(t), "task", "t-3", last)
	require.NoError(t, err)
	ids := func(query string) []string {
		t.Helper()
		var page state.ListResult
		e.getJSON(t, "/v1/state/task?"+query, http.StatusOK, &page)
		var out []string
		for _, r := range page.Records {
			out = append(out, r.ID)
		}
		return out
	}
	assert.Equal(t, []string{"t-1", "t-3"}, ids("where.status=open"))
	assert.Equal(t, []string{"t-1", "t-3"}, ids("where="+url.QueryEscape(`{"status":"open"}`)))
	assert.Equal(t, []string{"t-3"}, ids("where.status=open&where.n=2"))
	assert.Equal(t, []string{"t-3"}, ids("where.n=2&where="+url.QueryEscape(`{"status":"open"}`)))
	assert.Equal(t, []string{"t-2"}, ids("where.n=2.0&where.status=%22done%22"))
	assert.Equal(t, []string{"t-3"}, ids("held=true"))
	assert.Equal(t, []string{"t-1", "t-2"}, ids("held=false"))
	assert.Equal(t, []string{"t-3"}, ids("held=true&where.status=open&updated_after=1h"))

	e.wantError(t, "/v1/state/task?held=maybe", http.StatusBadRequest, "held")
	e.wantError(t, "/v1/state/task?where=x", http.StatusBadRequest, "want a JSON object")
	e.wantError(t, "/v1/state/task?where=%5B1%5D", http.StatusBadRequest, "want a JSON object")
	e.wantError(t, "/v1/state/task?where.=1", http.StatusBadRequest, "where.FIELD=VALUE")
	e.wantError(t, "/v1/state/task?where.n=1&where="+url.QueryEscape(`{"n":2}`), http.StatusBadRequest, "twice")
	e.wantError(t, "/v1/state/task?where="+url.QueryEscape(`{"n":1,"n":2}`), http.StatusBadRequest, "want a JSON object")
}

func TestAPI_Agents_PresenceAndHolds(t *testing.T) {
	e := start(t)
	_, err := e.sc.Heartbeat(ctxT(t), time.Minute, map[string]any{"task": "T-1"})
	require.NoError(t, err)
	agent2, err := state.NewClient(e.nc, "agent-2")
	require.NoError(t, err)
	_, err = agent2.Heartbeat(ctxT(t), time.Minute, nil)
	require.NoError(t, err)
	_, err = e.sc.Claim(ctxT(t), "task", "T-1", time.Minute, nil)
	require.NoError(t, err)
	_, err = e.sc.Reserve(ctxT(t), "proj", []string{"src/**"}, state.ReserveOptions{TTL: time.Minute})
	require.NoError(t, err)
	seq := e.putRaw(t, "task", "T-2", map[string]any{"status": "open"}, 0) // held by nobody
	_, err = e.sc.Get(ctxT(t), "task", "T-2", seq)
	require.NoError(t, err)

	var out httpapi.Agents
	e.getJSON(t, "/v1/agents", http.StatusOK, &out)
	require.Len(t, out.Agents, 2)
	a1, a2 := out.Agents[0], out.Agents[1]
	assert.Equal(t, "agent-1", a1.Presence.ID)
	require.Len(t, a1.Holds, 2)
	assert.Equal(t, "task", a1.Holds[0].Kind)
	assert.Equal(t, "reservation", a1.Holds[1].Kind)
	assert.Empty(t, a2.Holds)
	assert.False(t, out.Truncated)

	e.getJSON(t, "/v1/agents?holds=reservation", http.StatusOK, &out)
	require.Len(t, out.Agents[0].Holds, 1)
	e.wantError(t, "/v1/agents?holds=BAD", http.StatusBadRequest, "holds")
	e.wantError(t, "/v1/agents?x=1", http.StatusBadRequest, "unknown parameter")
}

func TestAPI_Audit_QueryVerifyStatus(t *testing.T) {
	e := start(t)
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		_, err := e.ac.LogAndWait(ctx, "agent-1", "file", []byte(`{"path":"README.md"}`))
		require.NoError(t, err)
	}
	_, err := e.ac.LogAndWait(ctx, "agent-2", "note", []byte(`{"n":1}`))
	require.NoError(t, err)

	var res audit.QueryResult
	e.getJSON(t, "/v1/audit?source=agent-1&category=file", http.StatusOK, &res)
	require.Len(t, res.Records, 3)
	e.getJSON(t, "/v1/audit?newest_first=true&limit=1", http.StatusOK, &res)
	require.Len(t, res.Records, 1)
	assert.Equal(t, "agent-2", res.Records[0].Source)
	e.getJSON(t, "/v1/audit?from=-1h&to=now&source=agent-1&limit=2", http.StatusOK, &res)
	require.Len(t, res.Records, 2)
	e.getJSON(t, "/v1/audit?source=agent-1&after_seq="+itoa(res.NextAfterSeq), http.StatusOK, &res)
	require.Len(t, res.Records, 1)
	e.getJSON(t, "/v1/audit?from="+url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339)), http.StatusOK, &res)
	assert.Empty(t, res.Records)

	e.wantError(t, "/v1/audit?from=yesterday", http.StatusBadRequest, "from")
	e.wantError(t, "/v1/audit?limit=-3", http.StatusBadRequest, "limit")
	e.wantError(t, "/v1/audit?newest_first=maybe", http.StatusBadRequest, "newest_first")
	e.wantError(t, "/v1/audit?sauce=x", http.StatusBadRequest, "unknown parameter")

	var v audit.VerifyResult
	e.getJSON(t, "/v1/audit/verify", http.StatusOK, &v)
	assert.True(t, v.OK)
	assert.GreaterOrEqual(t, v.Count, uint64(4))
	e.getJSON(t, "/v1/audit/verify?from_seq=1&to_seq=2", http.StatusOK, &v)
	assert.True(t, v.OK)
	e.wantError(t, "/v1/audit/verify?from_seq=5&to_seq=2", http.StatusBadRequest, "to_seq")
	e.wantError(t, "/v1/audit/verify?x=1", http.StatusBadRequest, "unknown parameter")

	var st audit.Status
	e.getJSON(t, "/v1/audit/status", http.StatusOK, &st)
	assert.GreaterOrEqual(t, st.Seq, uint64(4))
	e.wantError(t, "/v1/audit/status?x=1", http.StatusBadRequest, "no parameters")
}

func TestAPI_Status_WatermarksAndLag(t *testing.T) {
	e := start(t)
	seq := e.putRaw(t, "task", "T-1", nil, 0)
	_, err := e.sc.Get(ctxT(t), "task", "T-1", seq)
	require.NoError(t, err)
	var st httpapi.Status
	e.getJSON(t, "/v1/status", http.StatusOK, &st)
	assert.Empty(t, st.Problems)
	var w struct {
		StreamSeq uint64 `json:"stream_seq"`
	}
	require.NoError(t, json.Unmarshal(st.State, &w))
	assert.GreaterOrEqual(t, w.StreamSeq, seq)
	require.Len(t, st.Consumers, 2)
	assert.Equal(t, "CODI_STATE", st.Consumers[0].Stream)
	assert.Equal(t, "codi-state", st.Consumers[0].Consumer)
	assert.Equal(t, "CODI_AUDIT", st.Consumers[1].Stream)
	assert.Empty(t, st.Consumers[0].Error)
	assert.GreaterOrEqual(t, st.Consumers[0].Delivered, seq)
	e.wantError(t, "/v1/status?x=1", http.StatusBadRequest, "no parameters")
}

func TestAPI_PageAndOpenAPI(t *testing.T) {
	e := start(t)
	code, body := e.get(t, "/")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(body), "<title>codi2</title>")
	code, _ = e.get(t, "/app.js")
	assert.Equal(t, http.StatusOK, code)
	code, _ = e.get(t, "/nothing.js")
	assert.Equal(t, http.StatusNotFound, code)

	var doc map[string]any
	e.getJSON(t, "/v1/openapi.json", http.StatusOK, &doc)
	assert.Equal(t, "3.1.0", doc["openapi"])

	resp, err := http.Post(e.http.URL+"/v1/status", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

// feed is an open /v1/events stream.
type feed struct {
	t      *testing.T
	events chan sseEvent
}

type sseEvent struct {
	name string
	data string
}

// openFeed opens /v1/events with query and waits for its hello.
func (e *env) openFeed(t *testing.T, query string) *feed {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.http.URL+"/v1/events"+query, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	f := &feed{t: t, events: make(chan sseEvent, 1000)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(f.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				f.events <- ev
				ev = sseEvent{}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	hello := f.next(httpapi.EventHello)
	assert.Contains(t, hello.data, "subjects")
	return f
}

// next returns the next event named name, skipping others.
func (f *feed) next(name string) sseEvent {
	f.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-f.events:
			require.True(f.t, ok, "feed ended while waiting for %s", name)
			if ev.name == name {
				return ev
			}
		case <-timeout:
			require.FailNow(f.t, "no "+name+" event")
		}
	}
}

func TestEvents_StateMailAndWatermarks(t *testing.T) {
	e := start(t)
	f := e.openFeed(t, "")
	_, err := e.sc.Claim(ctxT(t), "task", "T-1", time.Minute, nil)
	require.NoError(t, err)
	var fm httpapi.FeedMessage
	require.NoError(t, json.Unmarshal([]byte(f.next(httpapi.EventState).data), &fm))
	assert.Equal(t, "codi.state.evt.task.T-1", fm.Subject)
	var ev state.Event
	require.NoError(t, json.Unmarshal(fm.Data, &ev))
	assert.Equal(t, state.StatusApplied, ev.Status)
	require.NotNil(t, ev.Record)
	assert.Equal(t, "agent-1", ev.Record.Holder())
	require.NoError(t, json.Unmarshal([]byte(f.next(httpapi.EventStateCommitted).data), &fm))
	assert.Contains(t, string(fm.Data), "stream_seq")
	require.NoError(t, json.Unmarshal([]byte(f.next(httpapi.EventAuditCommitted).data), &fm))
	assert.Contains(t, string(fm.Data), "stream_seq")

	// Mail: headers and size, no body unless asked.
	bodies := e.openFeed(t, "?bodies=true&subjects=codi.msg.agent-2.>")
	subj, err := subjects.Msg("agent-2", "agent-1", "task", "assign")
	require.NoError(t, err)
	msg := &nats.Msg{Subject: subj, Data: []byte(`{"task":"T-1"}`), Header: nats.Header{"Importance": []string{"high"}}}
	_, err = e.js.PublishMsg(ctxT(t), msg)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(f.next(httpapi.EventMail).data), &fm))
	assert.Equal(t, "agent-2", fm.To)
	assert.Equal(t, "agent-1", fm.From)
	assert.Equal(t, "task.assign", fm.Type)
	assert.Equal(t, "high", fm.Headers.Get("Importance"))
	assert.Equal(t, 14, fm.Size)
	assert.Nil(t, fm.Body)
	var withBody httpapi.FeedMessage
	require.NoError(t, json.Unmarshal([]byte(bodies.next(httpapi.EventMail).data), &withBody))
	require.NotNil(t, withBody.Body)
	assert.Equal(t, `{"task":"T-1"}`, *withBody.Body)

	// A binary body comes as base64.
	_, err = e.js.Publish(ctxT(t), subj, []byte{0xff, 0x00})
	require.NoError(t, err)
	withBody = httpapi.FeedMessage{}
	require.NoError(t, json.Unmarshal([]byte(bodies.next(httpapi.EventMail).data), &withBody))
	assert.Nil(t, withBody.Body)
	assert.Equal(t, []byte{0xff, 0x00}, withBody.BodyBase64)
}

func TestEvents_BadParameters(t *testing.T) {
	e := start(t)
	e.wantError(t, "/v1/events?subjects=codi.audit.log.>", http.StatusBadRequest, "not carried")
	e.wantError(t, "/v1/events?subjects=codi.>", http.StatusBadRequest, "not carried")
	e.wantError(t, "/v1/events?subjects=codi.state.evt.>.x", http.StatusBadRequest, "last token")
	e.wantError(t, "/v1/events?subjects=codi..x", http.StatusBadRequest, "subjects")
	e.wantError(t, "/v1/events?bodies=perhaps", http.StatusBadRequest, "bodies")
	e.wantError(t, "/v1/events?x=1", http.StatusBadRequest, "unknown parameter")
}

func TestEvents_CloseEndsFeeds(t *testing.T) {
	e := start(t)
	f := e.openFeed(t, "?subjects=codi.state.committed")
	e.srv.HTTP().Close()
	require.Eventually(t, func() bool {
		select {
		case _, ok := <-f.events:
			return !ok
		default:
			return false
		}
	}, 10*time.Second, 10*time.Millisecond)
}

func itoa(n uint64) string { return jsonNumber(n) }

func jsonNumber(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// A stopped server's API answers every read with an error status and a
// message, never a hang or an empty 200.
func TestAPI_ServerStopped(t *testing.T) {
	e := start(t)
	require.NoError(t, e.srv.Stop())
	for _, path := range []string{"/v1/state/task/x", "/v1/state/task", "/v1/audit", "/v1/agents"} {
		code, body := e.get(t, path)
		assert.GreaterOrEqual(t, code, 500, path)
		assert.Contains(t, string(body), `"error"`, path)
	}
	var st httpapi.Status
	e.getJSON(t, "/v1/status", http.StatusOK, &st)
	assert.NotEmpty(t, st.Problems)
	assert.Equal(t, "null", string(st.State))
}
