package httpapi

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/strictjson"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultRequestTimeout bounds one NATS request of the API.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultVerifyTimeout bounds an audit verify, which reads the range
	// it checks (about two seconds per million records).
	DefaultVerifyTimeout = time.Minute
	// DefaultMaxScan bounds the records /v1/agents reads of each kind.
	DefaultMaxScan = 10_000
)

// Agent is the agent id the API's state client reads as (it sends no
// commands).
const Agent = "codi2-http"

// Kinds of the records the agents view reads: presence, and what agents
// hold by default.
const (
	KindAgent       = "agent"
	KindReservation = "reservation"
	KindTask        = "task"
)

// Config configures a Handler. A Config is a plain value.
type Config struct {
	// NC carries every request and subscription of the Handler. Required;
	// the Handler does not close it.
	NC *nats.Conn
	// Metrics is served at /metrics; nil answers 404 there.
	Metrics *Metrics
	// RequestTimeout bounds one NATS request. Default
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// VerifyTimeout bounds an audit verify. Default DefaultVerifyTimeout.
	VerifyTimeout time.Duration
	// MaxScan bounds the records /v1/agents reads of each kind. Default
	// DefaultMaxScan.
	MaxScan int
	// StateConsumer is the state service's durable consumer on CODI_STATE,
	// for lag. Default state.DefaultConsumer.
	StateConsumer string
	// Auth, when set, requires a login (POST /v1/login with an observer
	// or admin credential) for every route but the page, the document and
	// /metrics; nil leaves the API open.
	Auth Authenticator
	// Log receives the feed's problems (a slow client dropped).
	Log zerolog.Logger
}

// Handler serves the HTTP side of a codi2 server: see the package doc and
// Routes. Safe for concurrent use.
type Handler struct {
	cfg    Config
	js     jetstream.JetStream
	client *state.Client
	mux    *http.ServeMux
	web    http.Handler
	log    zerolog.Logger

	sessions sessions

	closeOnce sync.Once
	done      chan struct{} // closed by Close: feeds end
}

//go:embed web openapi.json
var assets embed.FS

// route is one pattern of the mux and its handler.
type route struct {
	pattern string
	handle  func(h *Handler, w http.ResponseWriter, r *http.Request)
}

// routes is every pattern the Handler serves, each described in
// openapi.json (a test checks both ways).
var routes = []route{
	{"GET /v1/state/{kind}/{id}", (*Handler).getRecord},
	{"GET /v1/state/{kind}", (*Handler).listRecords},
	{"GET /v1/reservations", (*Handler).listReservations},
	{"GET /v1/agents", (*Handler).agents},
	{"GET /v1/audit", (*Handler).auditQuery},
	{"GET /v1/audit/verify", (*Handler).auditVerify},
	{"GET /v1/audit/status", (*Handler).auditStatus},
	{"GET /v1/status", (*Handler).status},
	{"GET /v1/events", (*Handler).events},
	{"GET /v1/openapi.json", (*Handler).openAPI},
	{"POST /v1/login", (*Handler).login},
	{"POST /v1/logout", (*Handler).logout},
	{"GET /metrics", (*Handler).metrics},
	{"GET /", (*Handler).page},
}

// Routes returns the mux patterns the Handler serves ("GET /v1/status",
// ...), in a fresh slice.
func Routes() []string {
	out := make([]string, len(routes))
	for i, r := range routes {
		out[i] = r.pattern
	}
	return out
}

// New returns a Handler over cfg.NC. It fails with ErrConfig without a
// connection. It does no I/O.
func New(cfg Config) (*Handler, error) {
	if cfg.NC == nil {
		return nil, fmt.Errorf("%w: a NATS connection is required", ErrConfig)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.VerifyTimeout <= 0 {
		cfg.VerifyTimeout = DefaultVerifyTimeout
	}
	if cfg.MaxScan <= 0 {
		cfg.MaxScan = DefaultMaxScan
	}
	if cfg.StateConsumer == "" {
		cfg.StateConsumer = state.DefaultConsumer
	}
	js, err := jetstream.New(cfg.NC)
	if err != nil {
		return nil, fmt.Errorf("httpapi: jetstream: %w", err)
	}
	client, err := state.NewClient(cfg.NC, Agent)
	if err != nil {
		return nil, fmt.Errorf("httpapi: %w", err)
	}
	web, _ := fs.Sub(assets, "web")
	h := &Handler{
		cfg: cfg, js: js, client: client, mux: http.NewServeMux(),
		web:  http.FileServerFS(web),
		log:  cfg.Log.With().Str("component", "http").Logger(),
		done: make(chan struct{}),
	}
	for _, rt := range routes {
		pattern, handle := rt.pattern, rt.handle
		h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if r := h.guard(pattern, w, r); r != nil {
				handle(h, w, r)
			}
		})
	}
	if cfg.Metrics != nil {
		cfg.Metrics.watch(h)
	}
	return h, nil
}

// ServeHTTP serves the routes. Safe for concurrent use.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Close ends every open feed (/v1/events) and makes new ones end at once;
// the rest of the API keeps answering. Call it before http.Server.Shutdown.
// Safe to call more than once.
func (h *Handler) Close() { h.closeOnce.Do(func() { close(h.done) }) }

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
	Code  int    `json:"code"`
}

// writeJSON writes v as the JSON body with status; '<', '>' and '&' as
// themselves (subjects hold '>'), not HTML escapes.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{Error: msg, Code: status})
}

// statusOf maps a NATS micro error code onto an HTTP status: the codes the
// services use are HTTP's (400, 404, 500, 503, 504); anything else is a
// 502, a reply the API cannot read.
func statusOf(code string) int {
	n, err := strconv.Atoi(code)
	if err != nil || n < 400 || n > 599 {
		return http.StatusBadGateway
	}
	return n
}

// natsFailure maps a failed request onto an HTTP status and text.
func natsFailure(subj string, err error) (int, string) {
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return http.StatusServiceUnavailable, "no service answers " + subj
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return http.StatusGatewayTimeout, "no answer on " + subj + " in time"
	}
	return http.StatusBadGateway, fmt.Sprintf("request %s: %v", subj, err)
}

// request sends body on subj and returns the reply's data, or the HTTP
// status and text of its failure.
func (h *Handler) request(ctx context.Context, subj string, body []byte, timeout time.Duration) ([]byte, int, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := h.cfg.NC.RequestWithContext(ctx, subj, body)
	if err != nil {
		status, text := natsFailure(subj, err)
		return nil, status, text
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return nil, statusOf(code), msg.Header.Get(micro.ErrorHeader)
	}
	return msg.Data, http.StatusOK, ""
}

// forward answers r with the reply to a request on subj: its JSON as is,
// or the error as JSON with the micro code as status.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, subj string, body any, timeout time.Duration) {
	data, err := json.Marshal(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	reply, status, text := h.request(r.Context(), subj, data, timeout)
	if status != http.StatusOK {
		writeError(w, status, text)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(reply)
}

// params reads a request's query parameters into a JSON request body.
type params struct {
	q    url.Values
	body map[string]any
	err  error
}

func newParams(r *http.Request) *params {
	return &params{q: r.URL.Query(), body: map[string]any{}}
}

// The query parameters each route takes (openapi.json lists the same; a
// test checks). A list takes any: see listBody.
var (
	getParams    = []string{"min_seq"}
	verifyParams = []string{"from_seq", "to_seq"}
	agentsParams = []string{"holds"}
	eventsParams = []string{"subjects", "bodies"}
	// auditQueryParams are the members of a codi.audit.query request.
	auditQueryParams = []string{"from", "to", "source", "category", "after_seq", "before_seq", "newest_first", "limit", "part_offset"}
)

// auditQueryBody turns GET /v1/audit's parameters into the body of a
// codi.audit.query request, or fails with ErrBadParam.
func auditQueryBody(q url.Values) (map[string]any, error) {
	p := &params{q: q, body: map[string]any{}}
	p.only(auditQueryParams...)
	for _, n := range []string{"from", "to", "source", "category"} {
		p.str(n)
	}
	for _, n := range []string{"after_seq", "before_seq", "limit", "part_offset"} {
		p.uint(n)
	}
	p.bool("newest_first")
	return p.body, p.err
}

// listBody turns a list's parameters into the body of a codi.state.list
// request: limit a number, held a boolean, where (a JSON object) and
// where.FIELD (one member each) the where object, every other parameter
// a string member.
func listBody(q url.Values) (map[string]any, error) {
	p := &params{q: q, body: map[string]any{}}
	for _, name := range slices.Sorted(maps.Keys(p.q)) {
		switch {
		case name == "limit":
			p.uint(name)
		case name == "held":
			p.bool(name)
		case name == "where" || strings.HasPrefix(name, "where."):
			p.where(name)
		default:
			p.str(name)
		}
	}
	return p.body, p.err
}

// where adds to the list request's where filter: where={"status":"open"}
// (a JSON object, each member a field's value) or where.status=open (the
// value JSON when it is JSON, else a string, as the CLI's --where k=v),
// which may be combined; one field given two values fails, as it could
// match nothing.
func (p *params) where(name string) {
	v, ok := p.one(name)
	if !ok || p.err != nil {
		return
	}
	members := map[string]json.RawMessage{}
	if name == "where" {
		if err := strictjson.Decode([]byte(v), &members); err != nil || len(members) == 0 && strings.TrimSpace(v) != "{}" {
			p.err = fmt.Errorf("%w: where=%q: want a JSON object such as {\"status\":\"open\"}, or where.FIELD=VALUE", ErrBadParam, v)
			return
		}
	} else {
		field := strings.TrimPrefix(name, "where.")
		if field == "" {
			p.err = fmt.Errorf("%w: %s: want where.FIELD=VALUE", ErrBadParam, name)
			return
		}
		raw := json.RawMessage(v)
		if !json.Valid(raw) {
			raw, _ = json.Marshal(v)
		}
		members[field] = raw
	}
	w, _ := p.body["where"].(map[string]json.RawMessage)
	if w == nil {
		w = map[string]json.RawMessage{}
	}
	for _, field := range slices.Sorted(maps.Keys(members)) {
		raw := members[field]
		if prev, ok := w[field]; ok && !bytes.Equal(prev, raw) {
			p.err = fmt.Errorf("%w: where gives field %s twice (%s and %s): a record's field has one value, nothing could match", ErrBadParam, field, prev, raw)
			return
		}
		w[field] = raw
	}
	p.body["where"] = w
}

// one returns the single value of name, and whether it was given.
func (p *params) one(name string) (string, bool) {
	vs, ok := p.q[name]
	if !ok {
		return "", false
	}
	if len(vs) > 1 && p.err == nil {
		p.err = fmt.Errorf("%w: %s given %d times", ErrBadParam, name, len(vs))
	}
	return vs[0], true
}

func (p *params) str(name string) {
	if v, ok := p.one(name); ok && v != "" {
		p.body[name] = v
	}
}

func (p *params) uint(name string) uint64 {
	v, ok := p.one(name)
	if !ok || v == "" {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("%w: %s=%q: want a whole number >= 0", ErrBadParam, name, v)
	}
	p.body[name] = n
	return n
}

func (p *params) bool(name string) {
	v, ok := p.one(name)
	if !ok || v == "" {
		return
	}
	b, err := strconv.ParseBool(v)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("%w: %s=%q: want true or false", ErrBadParam, name, v)
	}
	p.body[name] = b
}

// only fails on a parameter not in names.
func (p *params) only(names ...string) {
	for k := range p.q {
		if !contains(names, k) && p.err == nil {
			p.err = fmt.Errorf("%w: unknown parameter %q (known: %s)", ErrBadParam, k, strings.Join(names, ", "))
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// getRecord reads one record: GET /v1/state/{kind}/{id}[?min_seq=N]. The
// id is the wire token (escaped, see subjects.Escape), URL-encoded.
func (h *Handler) getRecord(w http.ResponseWriter, r *http.Request) {
	subj, err := subjects.StateGet(r.PathValue("kind"), r.PathValue("id"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	p := newParams(r)
	p.only(getParams...)
	if minSeq := p.uint("min_seq"); minSeq > 0 {
		// Ask the service to wait about as long as this request may, so a
		// slow watermark is its 504 rather than no answer.
		p.body["wait_ms"] = min(h.cfg.RequestTimeout*9/10, state.DefaultMaxGetWait).Milliseconds()
	}
	if p.err != nil {
		writeError(w, http.StatusBadRequest, p.err.Error())
		return
	}
	if len(p.body) == 0 {
		p.body = nil
	}
	h.forwardBody(w, r, subj, p.body)
}

// forwardBody forwards body, or an empty body when it is nil.
func (h *Handler) forwardBody(w http.ResponseWriter, r *http.Request, subj string, body map[string]any) {
	if body == nil {
		reply, status, text := h.request(r.Context(), subj, nil, h.cfg.RequestTimeout)
		if status != http.StatusOK {
			writeError(w, status, text)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(reply)
		return
	}
	h.forward(w, r, subj, body, h.cfg.RequestTimeout)
}

// listRecords lists a kind: GET /v1/state/{kind}?prefix=&after=&limit=.
// limit is a number; every other parameter is passed to the list request
// as a string member of the same name, so the service's own filters work
// and an unknown one is its 400.
func (h *Handler) listRecords(w http.ResponseWriter, r *http.Request) {
	h.list(w, r, r.PathValue("kind"))
}

// listReservations lists the file reservations: GET /v1/reservations, the
// records of kind reservation, with the parameters of listRecords.
func (h *Handler) listReservations(w http.ResponseWriter, r *http.Request) {
	h.list(w, r, KindReservation)
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request, kind string) {
	subj, err := subjects.StateList(kind)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, err := listBody(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	h.forward(w, r, subj, body, h.cfg.RequestTimeout)
}

// auditQuery answers GET /v1/audit with the parameters of
// codi.audit.query: from, to (RFC 3339 or relative such as -1h), source,
// category, after_seq, before_seq, newest_first, limit, part_offset.
func (h *Handler) auditQuery(w http.ResponseWriter, r *http.Request) {
	body, err := auditQueryBody(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	h.forward(w, r, subjects.AuditQuery, body, h.cfg.RequestTimeout)
}

// auditVerify answers GET /v1/audit/verify?from_seq=&to_seq=.
func (h *Handler) auditVerify(w http.ResponseWriter, r *http.Request) {
	p := newParams(r)
	p.only(verifyParams...)
	p.uint("from_seq")
	p.uint("to_seq")
	if p.err != nil {
		writeError(w, http.StatusBadRequest, p.err.Error())
		return
	}
	h.forward(w, r, subjects.AuditVerify, p.body, h.cfg.VerifyTimeout)
}

// auditStatus answers GET /v1/audit/status: codi.audit.status.
func (h *Handler) auditStatus(w http.ResponseWriter, r *http.Request) {
	if !noParams(w, r) {
		return
	}
	h.forward(w, r, subjects.AuditStatus, struct{}{}, h.cfg.RequestTimeout)
}

// noParams answers 400 and returns false for a request with parameters.
func noParams(w http.ResponseWriter, r *http.Request) bool {
	if len(r.URL.Query()) > 0 {
		writeError(w, http.StatusBadRequest, "bad parameter: this endpoint takes no parameters")
		return false
	}
	return true
}

// Consumer is one service's durable consumer as /v1/status reports it.
type Consumer struct {
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
	// Pending is the stream's messages not yet delivered to the consumer,
	// AckPending those delivered and not yet acknowledged (committed);
	// Lag is their sum.
	Pending    uint64 `json:"pending"`
	AckPending int    `json:"ack_pending"`
	Lag        uint64 `json:"lag"`
	// Delivered is the last stream sequence delivered.
	Delivered uint64 `json:"delivered_stream_seq"`
	Error     string `json:"error,omitempty"`
}

// Status is the body of GET /v1/status.
type Status struct {
	// State is codi.state.status's reply ({"stream_seq": N}), Audit
	// codi.audit.status's; null when the service did not answer (see
	// Problems).
	State     json.RawMessage `json:"state"`
	Audit     json.RawMessage `json:"audit"`
	Consumers []Consumer      `json:"consumers"`
	Problems  []string        `json:"problems,omitempty"`
	Time      time.Time       `json:"time"`
}

// consumers reads the lag of the two services' durable consumers.
func (h *Handler) consumers(ctx context.Context) []Consumer {
	list := []Consumer{
		{Stream: bus.StreamState, Consumer: h.cfg.StateConsumer},
		{Stream: bus.StreamAudit, Consumer: audit.ConsumerName},
	}
	for i := range list {
		c := &list[i]
		info, err := h.js.Consumer(ctx, c.Stream, c.Consumer)
		var ci *jetstream.ConsumerInfo
		if err == nil {
			ci, err = info.Info(ctx)
		}
		if err != nil {
			c.Error = err.Error()
			continue
		}
		c.Pending, c.AckPending, c.Delivered = ci.NumPending, ci.NumAckPending, ci.Delivered.Stream
		c.Lag = c.Pending + uint64(max(ci.NumAckPending, 0))
	}
	return list
}

// status answers GET /v1/status: both services' watermarks and their
// consumers' lag. It is 200 with Problems when a part is missing.
func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	if !noParams(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	defer cancel()
	st := Status{Time: time.Now().UTC()}
	for _, part := range []struct {
		subj string
		dst  *json.RawMessage
	}{{subjects.StateStatus, &st.State}, {subjects.AuditStatus, &st.Audit}} {
		data, status, text := h.request(ctx, part.subj, []byte("{}"), h.cfg.RequestTimeout)
		if status != http.StatusOK {
			st.Problems = append(st.Problems, fmt.Sprintf("%s: %d %s", part.subj, status, text))
			continue
		}
		*part.dst = data
	}
	st.Consumers = h.consumers(ctx)
	for _, c := range st.Consumers {
		if c.Error != "" {
			st.Problems = append(st.Problems, fmt.Sprintf("consumer %s on %s: %s", c.Consumer, c.Stream, c.Error))
		}
	}
	writeJSON(w, http.StatusOK, st)
}

// OnlineAgent is one agent of GET /v1/agents: its presence record and the
// records it holds.
type OnlineAgent struct {
	Presence state.Record   `json:"presence"`
	Holds    []state.Record `json:"holds"`
}

// Agents is the body of GET /v1/agents.
type Agents struct {
	Agents []OnlineAgent `json:"agents"`
	// Truncated is set when a kind had more than Config.MaxScan records
	// and only the first were read.
	Truncated bool `json:"truncated,omitempty"`
}

// agents answers GET /v1/agents[?holds=task,reservation]: the live records
// of kind agent (presence, with a TTL) in id order, each with the live
// records of the kinds in holds whose holder (state.Record.Holder) is that
// agent.
func (h *Handler) agents(w http.ResponseWriter, r *http.Request) {
	p := newParams(r)
	p.only(agentsParams...)
	holdsParam, given := p.one("holds")
	if p.err != nil {
		writeError(w, http.StatusBadRequest, p.err.Error())
		return
	}
	kinds := []string{KindTask, KindReservation}
	if given {
		kinds = nil
		for _, k := range strings.Split(holdsParam, ",") {
			if k = strings.TrimSpace(k); k == "" {
				continue
			}
			if err := subjects.ValidKind(k); err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("bad parameter: holds: %v", err))
				return
			}
			kinds = append(kinds, k)
		}
	}
	var out Agents
	presence, truncated, err := h.scan(r.Context(), KindAgent)
	if err != nil {
		h.writeClientError(w, err)
		return
	}
	out.Truncated = truncated
	byAgent := map[string]int{}
	out.Agents = make([]OnlineAgent, len(presence))
	for i, rec := range presence {
		out.Agents[i] = OnlineAgent{Presence: rec, Holds: []state.Record{}}
		byAgent[rec.ID] = i
	}
	for _, kind := range kinds {
		recs, truncated, err := h.scan(r.Context(), kind)
		if err != nil {
			h.writeClientError(w, err)
			return
		}
		out.Truncated = out.Truncated || truncated
		for _, rec := range recs {
			if i, ok := byAgent[rec.Holder()]; ok {
				out.Agents[i].Holds = append(out.Agents[i].Holds, rec)
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// scan lists up to MaxScan records of kind.
func (h *Handler) scan(ctx context.Context, kind string) ([]state.Record, bool, error) {
	var out []state.Record
	after := ""
	for {
		rctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
		page, err := h.client.List(rctx, kind, state.ListOptions{After: after, Limit: state.DefaultMaxListLimit})
		cancel()
		if err != nil {
			return nil, false, err
		}
		out = append(out, page.Records...)
		if len(out) >= h.cfg.MaxScan {
			return out[:h.cfg.MaxScan], page.NextAfter != "" || len(out) > h.cfg.MaxScan, nil
		}
		if page.NextAfter == "" {
			return out, false, nil
		}
		after = page.NextAfter
	}
}

// writeClientError answers a state.Client error with its status.
func (h *Handler) writeClientError(w http.ResponseWriter, err error) {
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, state.ErrBadRequest):
		status = http.StatusBadRequest
	case errors.Is(err, state.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, state.ErrUnavailable):
		status = http.StatusServiceUnavailable
	case errors.Is(err, state.ErrTimeout):
		status = http.StatusGatewayTimeout
	}
	writeError(w, status, err.Error())
}

// openAPI serves the OpenAPI document of these routes.
func (h *Handler) openAPI(w http.ResponseWriter, _ *http.Request) {
	data, _ := assets.ReadFile("openapi.json")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

// metrics serves Config.Metrics in Prometheus's text format.
func (h *Handler) metrics(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Metrics == nil {
		writeError(w, http.StatusNotFound, "metrics are off")
		return
	}
	h.cfg.Metrics.handler.ServeHTTP(w, r)
}

// page serves the dashboard (index.html and its assets); an unknown path
// under /v1/ is a JSON 404.
func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path+" (see /v1/openapi.json)")
		return
	}
	h.web.ServeHTTP(w, r)
}
