package state_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// A writer that holds a PubAck sequence reads its own write with min_seq.
func TestClient_Get_MinSeq(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	c := e.client("agent-1")
	ctx := ctxT(t)
	subj := cmdSubject(t, "task", "t1", "agent-1")
	for i := 1; i <= 20; i++ {
		seq := e.publish(subj, fmt.Sprintf(`{"op":"merge","fields":{"n":%d}}`, i))
		rec, err := c.Get(ctx, "task", "t1", seq)
		require.NoError(t, err)
		require.Equal(t, uint64(i), rec.Rev)
		require.GreaterOrEqual(t, rec.Seq, seq)
	}
}

// A get waiting for a watermark that does not come answers 504 after the
// service's bound, and does not hold up other requests meanwhile.
func TestClient_Get_MinSeqTimeout(t *testing.T) {
	e := newEnv(t)
	cfg := fastConfig()
	cfg.MaxGetWait = 500 * time.Millisecond
	e.start(cfg)
	c := e.client("agent-1")
	ctx := ctxT(t)

	waits := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := c.Get(ctx, "task", "t1", 1_000_000)
			waits <- err
		}()
	}
	// While they wait, status and plain gets answer at once.
	start := time.Now()
	for range 10 {
		_, err := c.Status(ctx)
		require.NoError(t, err)
		_, err = c.Get(ctx, "task", "t1", 0)
		require.ErrorIs(t, err, state.ErrNotFound)
	}
	assert.Less(t, time.Since(start), 400*time.Millisecond)
	for range 3 {
		assert.ErrorIs(t, <-waits, state.ErrTimeout)
	}
}

// A get with min_seq that the watermark does not reach answers 504 within
// the service's default wait (below the nats CLI's 5 s), or within the
// wait_ms it asks for (issue 12, input 7).
func TestService_Get_WaitBound(t *testing.T) {
	e := newEnv(t)
	cfg := fastConfig()
	cfg.GetWait, cfg.MaxGetWait = 300*time.Millisecond, time.Second
	e.start(cfg)
	tests := []struct {
		name, body string
		min, max   time.Duration
	}{
		{"default wait", `{"min_seq":1000000}`, 300 * time.Millisecond, 990 * time.Millisecond},
		{"asked wait", `{"min_seq":1000000,"wait_ms":50}`, 50 * time.Millisecond, 290 * time.Millisecond},
		{"no wait", `{"min_seq":1000000,"wait_ms":0}`, 0, 290 * time.Millisecond},
		{"capped wait", `{"min_seq":1000000,"wait_ms":600000}`, time.Second, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			resp, err := e.nc.Request("codi.state.get.task.t1", []byte(tt.body), 20*time.Second)
			took := time.Since(start)
			require.NoError(t, err)
			assert.Equal(t, "504", resp.Header.Get(micro.ErrorCodeHeader))
			assert.GreaterOrEqual(t, took, tt.min)
			if tt.name != "capped wait" {
				assert.Less(t, took, tt.max)
			}
		})
	}
	// The default is below the nats CLI's 5 s request timeout.
	assert.Less(t, state.DefaultGetWait, 5*time.Second)
	var c state.Config
	require.NoError(t, c.Validate())
	assert.Equal(t, state.DefaultGetWait, c.GetWait)
	// The Go client asks for as long as its context allows.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := e.client("agent-1").Get(ctx, "task", "t1", 1_000_000)
	require.ErrorIs(t, err, state.ErrTimeout)
	assert.Contains(t, err.Error(), "504", "answered by the service, not the client's timeout")
}

func TestService_Get_Errors(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	ctx := ctxT(t)
	c := e.client("agent-1")
	_, err := c.Apply(ctx, "task", "t1", state.Command{Op: state.OpPut})
	require.NoError(t, err)

	// Every get and list request is answered, malformed ones with a 400
	// that says what is wrong (and how to escape an id), never "no
	// responders" and never in Go's terms (issue 12, inputs 1-3 and 9).
	tests := []struct {
		name, subject, body, wantCode, wantMsg string
	}{
		{"found", "codi.state.get.task.t1", "", "", ""},
		{"found with empty object", "codi.state.get.task.t1", "{}", "", ""},
		{"missing", "codi.state.get.task.nope", "", "404", "task nope not found"},
		{"bad kind", "codi.state.get.Task.t1", "", "400", "kind"},
		{"bad body", "codi.state.get.task.t1", "{", "400", "invalid JSON"},
		{"unknown field", "codi.state.get.task.t1", `{"min":1}`, "400", `unknown member "min" (members: min_seq, wait_ms)`},
		{"negative min_seq", "codi.state.get.task.t1", `{"min_seq":-1}`, "400", "min_seq must be a non-negative integer, not number -1"},
		{"array body", "codi.state.get.task.t1", `[]`, "400", "want an object, not array"},
		{"duplicate member", "codi.state.get.task.t1", `{"min_seq":1,"min_seq":2}`, "400", `duplicate member "min_seq"`},
		{"trailing data", "codi.state.get.task.t1", `{} {}`, "400", "invalid JSON"},
		{"negative wait", "codi.state.get.task.t1", `{"min_seq":1,"wait_ms":-1}`, "400", "wait_ms -1 is negative"},
		{"unescaped path", "codi.state.get.file.src/main.go", "", "400", `the id "src/main.go" must be one token: escape it as "src/main%2Ego"`},
		{"no id", "codi.state.get.task", "", "400", "not a codi2 subject"},
		{"lower-case escape", "codi.state.get.file.src/main%2ego", "", "400", "must be upper case (%2E)"},
		{"needless escape", "codi.state.get.task.%741", "", "400", `an escape of "t"`},
		{"list with an id", "codi.state.list.file.src/main.go", "", "400", "list takes no id"},
		{"list bad body", "codi.state.list.task", `{"limit":"x"}`, "400", "limit must be an integer, not string"},
		{"list unknown member", "codi.state.list.task", `{"prefix":"","form":1}`, "400", `unknown member "form"`},
		{"list bad after", "codi.state.list.task", `{"after":"a%2e"}`, "400", "after:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.nc.RequestWithContext(ctx, tt.subject, []byte(tt.body))
			require.NoError(t, err)
			assert.Equal(t, tt.wantCode, resp.Header.Get(micro.ErrorCodeHeader), resp.Header.Get(micro.ErrorHeader))
			msg := resp.Header.Get(micro.ErrorHeader)
			assert.Contains(t, msg, tt.wantMsg)
			assert.NotContains(t, msg, "Go ")
			if tt.wantCode == "" {
				assert.JSONEq(t, "1", string(mustField(t, resp.Data, "rev")))
			}
		})
	}
	_, err = c.Get(ctx, "Task", "t1", 0)
	require.ErrorIs(t, err, state.ErrBadRequest)
}

func TestService_List(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	ctx := ctxT(t)
	c := e.client("agent-1")
	ids := []string{"a1", "a2", "a3", "b1", "b2", "c1"}
	for _, id := range ids {
		_, err := c.Apply(ctx, "task", id, state.Command{Op: state.OpPut, Fields: map[string]any{"id": id}})
		require.NoError(t, err)
	}
	_, err := c.Apply(ctx, "other", "a0", state.Command{Op: state.OpPut})
	require.NoError(t, err)
	// A deleted record leaves a tombstone that list skips.
	ev, err := c.Apply(ctx, "task", "a2", state.Command{Op: state.OpDelete})
	require.NoError(t, err)
	e.waitApplied(ev.Seq)

	idsOf := func(res state.ListResult) []string {
		var out []string
		for _, r := range res.Records {
			out = append(out, r.ID)
		}
		return out
	}
	res, err := c.List(ctx, "task", state.ListOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"a1", "a3", "b1", "b2", "c1"}, idsOf(res))
	assert.Empty(t, res.NextAfter)

	// Pages of two, following next_after.
	var all []string
	opts := state.ListOptions{Limit: 2}
	for page := 0; ; page++ {
		require.Less(t, page, 10)
		res, err := c.List(ctx, "task", opts)
		require.NoError(t, err)
		assert.LessOrEqual(t, len(res.Records), 2)
		all = append(all, idsOf(res)...)
		if res.NextAfter == "" {
			break
		}
		opts.After = res.NextAfter
	}
	assert.Equal(t, []string{"a1", "a3", "b1", "b2", "c1"}, all)

	res, err = c.List(ctx, "task", state.ListOptions{Prefix: "a"})
	require.NoError(t, err)
	assert.Equal(t, []string{"a1", "a3"}, idsOf(res))
	res, err = c.List(ctx, "task", state.ListOptions{Prefix: "b", After: "b1"})
	require.NoError(t, err)
	assert.Equal(t, []string{"b2"}, idsOf(res))
	res, err = c.List(ctx, "task", state.ListOptions{Prefix: "b", After: "a"})
	require.NoError(t, err)
	assert.Equal(t, []string{"b1", "b2"}, idsOf(res))
	res, err = c.List(ctx, "nothing", state.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, res.Records)
	assert.Empty(t, res.NextAfter)

	_, err = c.List(ctx, "task", state.ListOptions{Limit: -1})
	require.ErrorIs(t, err, state.ErrBadRequest)
	_, err = c.List(ctx, "Task", state.ListOptions{})
	require.ErrorIs(t, err, state.ErrBadRequest)
	resp, err := e.nc.RequestWithContext(ctx, "codi.state.list.task", []byte(`{"limit":"x"}`))
	require.NoError(t, err)
	assert.Equal(t, "400", resp.Header.Get(micro.ErrorCodeHeader))

	// The raw reply has the contract's shape.
	resp, err = e.nc.RequestWithContext(ctx, "codi.state.list.task", []byte(`{"prefix":"c"}`))
	require.NoError(t, err)
	assert.JSONEq(t, `""`, string(mustField(t, resp.Data, "next_after")))
}

// Above the configured maximum, list answers MaxListLimit records.
func TestService_List_MaxLimit(t *testing.T) {
	e := newEnv(t)
	cfg := fastConfig()
	cfg.MaxListLimit = 3
	e.start(cfg)
	ctx := ctxT(t)
	c := e.client("agent-1")
	var last uint64
	for i := range 5 {
		last = e.publish(cmdSubject(t, "task", fmt.Sprintf("t%d", i), "agent-1"), `{"op":"put","fields":{}}`)
	}
	e.waitApplied(last)
	res, err := c.List(ctx, "task", state.ListOptions{Limit: 100})
	require.NoError(t, err)
	assert.Len(t, res.Records, 3)
	assert.Equal(t, "t2", res.NextAfter)
}

// A list page stays within the server's maximum payload.
func TestService_List_PayloadBound(t *testing.T) {
	e := newEnv(t)
	e.start(fastConfig())
	ctx := ctxT(t)
	c := e.client("agent-1")
	big := strings.Repeat("x", 90_000)
	var last uint64
	for i := range 15 {
		last = e.publish(cmdSubject(t, "doc", fmt.Sprintf("d%02d", i), "agent-1"), fmt.Sprintf(`{"op":"put","fields":{"body":%q}}`, big))
	}
	e.waitApplied(last)
	res, err := c.List(ctx, "doc", state.ListOptions{Limit: 100})
	require.NoError(t, err)
	require.NotEmpty(t, res.NextAfter)
	require.Less(t, len(res.Records), 15)
	next, err := c.List(ctx, "doc", state.ListOptions{Limit: 100, After: res.NextAfter})
	require.NoError(t, err)
	assert.Len(t, next.Records, 15-len(res.Records))
}

func TestClient_Status(t *testing.T) {
	e := newEnv(t)
	c := e.client("agent-1")
	ctx := ctxT(t)
	_, err := c.Status(ctx)
	require.ErrorIs(t, err, state.ErrUnavailable, "no service yet")

	e.start(fastConfig())
	n, err := c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(0), n)

	// The committed watermark is published after each batch.
	sub, err := e.nc.SubscribeSync(subjects.StateCommitted)
	require.NoError(t, err)
	require.NoError(t, e.nc.Flush())
	seq := e.publish(cmdSubject(t, "task", "t1", "agent-1"), `{"op":"put","fields":{}}`)
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	assert.JSONEq(t, fmt.Sprintf(`{"stream_seq":%d}`, seq), string(m.Data))
	n, err = c.Status(ctx)
	require.NoError(t, err)
	assert.Equal(t, seq, n)

	// nats micro ls finds the service with its three endpoints.
	resp, err := e.nc.Request("$SRV.INFO.codi-state", nil, 2*time.Second)
	require.NoError(t, err)
	for _, want := range []string{`"codi.state.get.\u003e"`, `"codi.state.list.\u003e"`, `"codi.state.status"`} {
		assert.Contains(t, string(resp.Data), want)
	}
}

func TestClient_Timeouts(t *testing.T) {
	e := newEnv(t)
	c := e.client("agent-1")
	// No service consumes: Apply gets its PubAck but no event.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Apply(ctx, "task", "t1", state.Command{Op: state.OpPut})
	require.ErrorIs(t, err, state.ErrTimeout)

	// A responder that never answers: the request times out.
	sub, err := e.nc.Subscribe("codi.state.get.task.slow", func(*nats.Msg) {})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err = c.Get(ctx2, "task", "slow", 0)
	require.ErrorIs(t, err, state.ErrTimeout)

	// A reply that is not JSON, or an unknown error code.
	sub2, err := e.nc.Subscribe("codi.state.get.task.odd", func(m *nats.Msg) { _ = m.Respond([]byte("nope")) })
	require.NoError(t, err)
	defer func() { _ = sub2.Unsubscribe() }()
	_, err = c.Get(ctxT(t), "task", "odd", 0)
	require.ErrorIs(t, err, state.ErrRemote)
	sub3, err := e.nc.Subscribe("codi.state.get.task.teapot", func(m *nats.Msg) {
		r := nats.NewMsg(m.Reply)
		r.Header.Set(micro.ErrorCodeHeader, "418")
		r.Header.Set(micro.ErrorHeader, "teapot")
		_ = m.RespondMsg(r)
	})
	require.NoError(t, err)
	defer func() { _ = sub3.Unsubscribe() }()
	_, err = c.Get(ctxT(t), "task", "teapot", 0)
	require.ErrorIs(t, err, state.ErrRemote)
}
