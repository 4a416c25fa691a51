package httpapi_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/httpapi"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/state"
)

// scrape returns /metrics as text.
func (e *env) scrape(t *testing.T) string {
	t.Helper()
	code, body := e.get(t, "/metrics")
	require.Equal(t, http.StatusOK, code)
	return string(body)
}

// metricValue finds the sample name{labels} in text (labels as Prometheus
// writes them, sorted by name), or -1.
func metricValue(text, name, labels string) float64 {
	if labels != "" {
		labels = "{" + labels + "}"
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+labels) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

func TestMetrics_CountKnownTraffic(t *testing.T) {
	e := start(t)
	var logs bytes.Buffer
	// The access log and the request counter, as serve wraps the handler.
	logged := httptest.NewServer(httpapi.AccessLog(zerolog.New(&logs), e.srv.Metrics(), e.srv.HTTP()))
	t.Cleanup(logged.Close)
	e.http = logged

	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		_, err := e.sc.Apply(ctx, "task", fmt.Sprintf("T-%d", i), state.Command{Op: state.OpPut, Fields: map[string]any{"n": i}})
		require.NoError(t, err)
	}
	_, err := e.sc.Apply(ctx, "task", "T-0", state.Command{Op: state.OpPut, Fields: map[string]any{}, ExpectRev: state.Expect(7)})
	require.ErrorIs(t, err, state.ErrConflict)
	_, err = e.sc.Apply(ctx, "agent", "agent-1", state.Command{Op: state.OpPut, Fields: map[string]any{}, TTL: time.Minute})
	require.NoError(t, err)
	_, err = e.sc.Apply(ctx, "lease", "L-1", state.Command{Op: state.OpPut, Fields: map[string]any{}, TTL: 50 * time.Millisecond})
	require.NoError(t, err)
	for i := 0; i < 2; i++ {
		_, err := e.ac.LogAndWait(ctx, "agent-1", "note", []byte(`{}`))
		require.NoError(t, err)
	}

	var text string
	// 5 applied puts, 1 conflict, 1 expiry; every outcome is an audit
	// record too: 7 + the 2 logged.
	require.Eventually(t, func() bool {
		text = e.scrape(t)
		return metricValue(text, httpapi.MetricLeaseExpiries, "") == 1 &&
			metricValue(text, httpapi.MetricAuditRecords, "") == 9
	}, 15*time.Second, 50*time.Millisecond, "last scrape:\n%s", grepCodi2(text))
	assert.Equal(t, 5.0, metricValue(text, httpapi.MetricCommands, `op="put",reason="",status="applied"`))
	assert.Equal(t, 1.0, metricValue(text, httpapi.MetricCommands, `op="put",reason="conflict",status="rejected"`))
	assert.Equal(t, 1.0, metricValue(text, httpapi.MetricCommands, `op="expire",reason="",status="applied"`))
	assert.GreaterOrEqual(t, metricValue(text, httpapi.MetricStateBatch+"_count", ""), 1.0)
	assert.Equal(t, 6.0, metricValue(text, httpapi.MetricStateBatch+"_sum", ""), "commands in batches (the expiry is not a command batch)")
	assert.GreaterOrEqual(t, metricValue(text, httpapi.MetricStateCommit+"_count", ""), 1.0)
	assert.Equal(t, 9.0, metricValue(text, httpapi.MetricAuditBatch+"_sum", ""))
	assert.GreaterOrEqual(t, metricValue(text, httpapi.MetricAuditCommit+"_count", ""), 1.0)
	assert.GreaterOrEqual(t, metricValue(text, httpapi.MetricStoreCommits, `store="state"`), 7.0)
	assert.GreaterOrEqual(t, metricValue(text, httpapi.MetricStoreCommits, `store="audit"`), 1.0)
	assert.Equal(t, 1.0, metricValue(text, httpapi.MetricAgentsOnline, ""))
	assert.GreaterOrEqual(t, metricValue(text, httpapi.MetricConsumerLag, `consumer="codi-state",stream="CODI_STATE"`), 0.0)
	assert.GreaterOrEqual(t, metricValue(text, httpapi.MetricConsumerLag, `consumer="codi-audit",stream="CODI_AUDIT"`), 0.0)
	assert.Greater(t, metricValue(text, "go_goroutines", ""), 0.0)
	assert.GreaterOrEqual(t, metricValue(text, "process_cpu_seconds_total", ""), 0.0)
	// The scrapes themselves were counted and logged.
	assert.GreaterOrEqual(t, metricValue(e.scrape(t), httpapi.MetricHTTPRequests, `code="200"`), 1.0)
	assert.Contains(t, logs.String(), `"path":"/metrics"`)
	assert.Contains(t, logs.String(), `"status":200`)
	assert.Contains(t, logs.String(), `"component":"http"`)
}

func TestAccessLog_StatusAndFeed(t *testing.T) {
	e := start(t)
	var logs bytes.Buffer
	logged := httptest.NewServer(httpapi.AccessLog(zerolog.New(&logs), nil, e.srv.HTTP()))
	t.Cleanup(logged.Close)
	e.http = logged
	e.wantError(t, "/v1/state/task/none", http.StatusNotFound, "")
	assert.Contains(t, logs.String(), `"status":404`)
	// The feed streams through the access log's writer.
	f := e.openFeed(t, "?subjects=codi.state.evt.>")
	_, err := e.sc.Apply(ctxT(t), "task", "T-9", state.Command{Op: state.OpPut, Fields: map[string]any{}})
	require.NoError(t, err)
	f.next(httpapi.EventState)
}

func TestMetrics_OffWithoutRegistry(t *testing.T) {
	e := start(t)
	h, err := httpapi.New(httpapi.Config{NC: e.nc})
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
}

// grepCodi2 keeps the codi2_ lines of a scrape, for failure messages.
func grepCodi2(text string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "codi2_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// CountCommits keeps a store's split commit (kv.AsyncStore), so that the
// state service's kv.UpdateAsync is not turned into Update by the
// counting; both kinds of commit are counted, a failed one is not, and a
// store without it stays without it.
func TestMetrics_CountCommits_KeepsAsyncStore(t *testing.T) {
	m := httpapi.NewMetrics()
	_, isAsync := m.CountCommits("bolt", kvtest.NewBolt(t)).(kv.AsyncStore)
	assert.False(t, isAsync)

	s, ok := m.CountCommits("pebble", kvtest.NewPebble(t)).(kv.AsyncStore)
	require.True(t, ok, "the counted store lost UpdateAsync")
	set := func(tx kv.Txn) error { return tx.Set([]byte("k"), []byte("v")) }
	durable, err := s.UpdateAsync(t.Context(), set)
	require.NoError(t, err)
	require.NoError(t, durable())
	require.NoError(t, s.Update(t.Context(), set))
	_, err = s.UpdateAsync(t.Context(), func(kv.Txn) error { return errors.New("no") })
	require.Error(t, err)

	families, err := m.Registry().Gather()
	require.NoError(t, err)
	var got float64
	for _, f := range families {
		if f.GetName() != httpapi.MetricStoreCommits {
			continue
		}
		for _, mt := range f.GetMetric() {
			if mt.GetLabel()[0].GetValue() == "pebble" {
				got = mt.GetCounter().GetValue()
			}
		}
	}
	assert.Equal(t, 2.0, got)
}
