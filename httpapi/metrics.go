package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/state"
)

// Metrics is a codi2 server's Prometheus registry: the Go and process
// collectors, what the state and audit services report through their
// Config.Metrics hooks (Metrics implements state.Metrics and audit.Metrics),
// store commits (CountCommits), HTTP requests, and, read from JetStream
// and the state service when scraped, consumer lag and agents online. Safe
// for concurrent use.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	commands      *prometheus.CounterVec
	leaseExpiries prometheus.Counter
	stateBatch    prometheus.Histogram
	stateCommit   prometheus.Histogram
	auditRecords  prometheus.Counter
	auditBatch    prometheus.Histogram
	auditCommit   prometheus.Histogram
	storeCommits  *prometheus.CounterVec
	httpRequests  *prometheus.CounterVec
}

// Metric names, for dashboards and alerts (README, section Metrics).
const (
	MetricCommands      = "codi2_state_commands_total"
	MetricLeaseExpiries = "codi2_state_lease_expiries_total"
	MetricStateBatch    = "codi2_state_batch_commands"
	MetricStateCommit   = "codi2_state_commit_seconds"
	MetricAuditRecords  = "codi2_audit_records_appended_total"
	MetricAuditBatch    = "codi2_audit_batch_records"
	MetricAuditCommit   = "codi2_audit_commit_seconds"
	MetricStoreCommits  = "codi2_store_commits_total"
	MetricHTTPRequests  = "codi2_http_requests_total"
	MetricConsumerLag   = "codi2_consumer_lag"
	MetricAgentsOnline  = "codi2_agents_online"
)

var (
	_ state.Metrics = (*Metrics)(nil)
	_ audit.Metrics = (*Metrics)(nil)
)

// NewMetrics returns a registry with the Go and process collectors and
// codi2's own metrics at zero.
func NewMetrics() *Metrics {
	latency := prometheus.ExponentialBuckets(0.0005, 2, 14) // 0.5 ms .. 4 s
	sizes := prometheus.ExponentialBuckets(1, 4, 8)         // 1 .. 16384
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricCommands, Help: "State commands by op and outcome: status applied, rejected (with reason) or lost.",
		}, []string{"op", "status", "reason"}),
		leaseExpiries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricLeaseExpiries, Help: "Leases the state service ended because their ttl passed.",
		}),
		stateBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: MetricStateBatch, Help: "Commands per committed state batch.", Buckets: sizes,
		}),
		stateCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: MetricStateCommit, Help: "Seconds one state batch's store transaction took, retries included.", Buckets: latency,
		}),
		auditRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricAuditRecords, Help: "Records appended to the audit log.",
		}),
		auditBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: MetricAuditBatch, Help: "Records per committed audit transaction.", Buckets: sizes,
		}),
		auditCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: MetricAuditCommit, Help: "Seconds one audit append transaction took.", Buckets: latency,
		}),
		storeCommits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricStoreCommits, Help: "Committed store transactions by store (state, audit); on bbolt each is an fsync.",
		}, []string{"store"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricHTTPRequests, Help: "HTTP requests answered, by status code.",
		}, []string{"code"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.commands, m.leaseExpiries, m.stateBatch, m.stateCommit,
		m.auditRecords, m.auditBatch, m.auditCommit, m.storeCommits, m.httpRequests,
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// Registry is the registry behind /metrics, for a caller's own metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Committed implements state.Metrics.
func (m *Metrics) Committed(commands int, took time.Duration) {
	m.stateBatch.Observe(float64(commands))
	m.stateCommit.Observe(took.Seconds())
}

// Outcome implements state.Metrics; a lease expiry also counts in
// codi2_state_lease_expiries_total.
func (m *Metrics) Outcome(op state.Op, status state.Status, reason state.Reason) {
	m.commands.WithLabelValues(string(op), string(status), string(reason)).Inc()
	if op == state.OpExpire && status == state.StatusApplied {
		m.leaseExpiries.Inc()
	}
}

// Appended implements audit.Metrics.
func (m *Metrics) Appended(records int, took time.Duration) {
	m.auditRecords.Add(float64(records))
	m.auditBatch.Observe(float64(records))
	m.auditCommit.Observe(took.Seconds())
}

// CountCommits returns store with its successful Update calls counted as
// codi2_store_commits_total{store=name}. When store is a kv.AsyncStore so
// is the result, and its UpdateAsync calls that applied are counted too.
// The result is safe for concurrent use as store is; closing it closes
// store.
func (m *Metrics) CountCommits(name string, store kv.Store) kv.Store {
	c := countingStore{Store: store, commits: m.storeCommits.WithLabelValues(name)}
	if as, ok := store.(kv.AsyncStore); ok {
		return countingAsyncStore{countingStore: c, async: as}
	}
	return c
}

// countingAsyncStore is a countingStore that keeps kv.AsyncStore.
type countingAsyncStore struct {
	countingStore
	async kv.AsyncStore
}

func (s countingAsyncStore) UpdateAsync(ctx context.Context, fn func(tx kv.Txn) error) (func() error, error) {
	durable, err := s.async.UpdateAsync(ctx, fn)
	if err == nil {
		s.commits.Inc()
	}
	return durable, err
}

type countingStore struct {
	kv.Store
	commits prometheus.Counter
}

func (s countingStore) Update(ctx context.Context, fn func(tx kv.Txn) error) error {
	err := s.Store.Update(ctx, fn)
	if err == nil {
		s.commits.Inc()
	}
	return err
}

// observeRequest counts one answered HTTP request.
func (m *Metrics) observeRequest(code int) {
	m.httpRequests.WithLabelValues(strconv.Itoa(code)).Inc()
}

// watch registers the collector that reads lag and presence through h
// when scraped. A second Handler on the same Metrics is not registered
// again.
func (m *Metrics) watch(h *Handler) {
	_ = m.reg.Register(&scrape{h: h})
}

// scrapeTimeout bounds the reads a scrape makes.
const scrapeTimeout = 2 * time.Second

var (
	lagDesc = prometheus.NewDesc(MetricConsumerLag,
		"Messages of the stream the service's durable consumer has not acknowledged (pending + ack pending).",
		[]string{"stream", "consumer"}, nil)
	agentsDesc = prometheus.NewDesc(MetricAgentsOnline,
		"Live presence records (kind agent): agents whose heartbeat has not lapsed.", nil, nil)
)

// scrape collects what is read at scrape time.
type scrape struct{ h *Handler }

func (s *scrape) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- agentsDesc
}

func (s *scrape) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	for _, c := range s.h.consumers(ctx) {
		if c.Error == "" {
			ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(c.Lag), c.Stream, c.Consumer)
		}
	}
	if agents, _, err := s.h.scan(ctx, KindAgent); err == nil {
		ch <- prometheus.MustNewConstMetric(agentsDesc, prometheus.GaugeValue, float64(len(agents)))
	}
}
