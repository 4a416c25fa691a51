package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/codi2/codi2/internal/auth"
	"github.com/codi2/codi2/subjects"
)

// Feed event names of /v1/events (the SSE "event:" field), and the
// subject each carries.
const (
	EventState          = "state"           // codi.state.evt.>
	EventMail           = "mail"            // codi.msg.>
	EventStateCommitted = "state-committed" // codi.state.committed
	EventAuditCommitted = "audit-committed" // codi.audit.committed
	// EventHello is the first event of every feed, once its subscriptions
	// are live: {"subjects": [...]}.
	EventHello = "hello"
	// EventDropped says how many messages the feed dropped because the
	// client read too slowly: {"dropped": N}.
	EventDropped = "dropped"
)

// feedSubjects are the subjects the feed may carry, and a feed's default.
var feedSubjects = []string{subjects.StateEvtWildcard, subjects.MsgWildcard, subjects.StateCommitted, subjects.AuditCommitted}

// Feed tuning: a client's buffer of messages not yet written, and how
// often an idle feed sends a comment so proxies keep it open.
const (
	feedBuffer    = 1024
	feedKeepalive = 15 * time.Second
)

// FeedMessage is the data of a state, mail or watermark event: the NATS
// subject and, for JSON payloads (events, watermarks), the payload itself.
// Mail carries its headers and size, and its body only when the feed was
// asked for bodies (bodies=true): as a string when it is UTF-8, else as
// base64 in BodyBase64.
type FeedMessage struct {
	Subject    string          `json:"subject"`
	Data       json.RawMessage `json:"data,omitempty"`
	To         string          `json:"to,omitempty"`
	From       string          `json:"from,omitempty"`
	Type       string          `json:"type,omitempty"`
	Headers    nats.Header     `json:"headers,omitempty"`
	Size       int             `json:"size"`
	Body       *string         `json:"body,omitempty"`
	BodyBase64 []byte          `json:"body_base64,omitempty"`
	Time       time.Time       `json:"time"`
}

// parseFeedSubjects reads the subjects parameter: a comma-separated list
// of NATS subjects (wildcards allowed), each within one of feedSubjects.
func parseFeedSubjects(param string) ([]string, error) {
	if strings.TrimSpace(param) == "" {
		return feedSubjects, nil
	}
	var out []string
	for _, s := range strings.Split(param, ",") {
		s = strings.TrimSpace(s)
		if err := validWildSubject(s); err != nil {
			return nil, fmt.Errorf("%w: subjects: %q: %v", ErrBadParam, s, err)
		}
		ok := false
		for _, f := range feedSubjects {
			if covers(f, s) {
				ok = true
				break
			}
		}
		if !ok {
			return nil, fmt.Errorf("%w: subjects: %q is not carried by the feed (it carries %s)", ErrBadParam, s, strings.Join(feedSubjects, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

// validWildSubject checks s as a NATS subscription subject whose literal
// tokens are contract tokens.
func validWildSubject(s string) error {
	toks := strings.Split(s, ".")
	for i, t := range toks {
		switch {
		case t == "*":
		case t == ">":
			if i != len(toks)-1 {
				return fmt.Errorf("'>' must be the last token")
			}
		default:
			if err := subjects.ValidToken(t); err != nil {
				return err
			}
		}
	}
	return nil
}

// covers reports whether every subject that sub matches also matches
// pattern.
func covers(pattern, sub string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(sub, ".")
	for i, pt := range p {
		if pt == ">" {
			return len(s) > i
		}
		if i >= len(s) || s[i] == ">" {
			return false
		}
		if pt != "*" && (s[i] == "*" || s[i] != pt) {
			return false
		}
	}
	return len(s) == len(p)
}

// eventName is the feed event name of a message on subj.
func eventName(subj string) string {
	switch {
	case subj == subjects.StateCommitted:
		return EventStateCommitted
	case subj == subjects.AuditCommitted:
		return EventAuditCommitted
	case strings.HasPrefix(subj, "codi.msg."):
		return EventMail
	}
	return EventState
}

// feedMessage is m as the feed sends it.
func feedMessage(m *nats.Msg, bodies bool) FeedMessage {
	fm := FeedMessage{Subject: m.Subject, Size: len(m.Data), Time: time.Now().UTC()}
	if eventName(m.Subject) != EventMail {
		if json.Valid(m.Data) {
			fm.Data = m.Data
		}
		return fm
	}
	if p, err := subjects.Parse(m.Subject); err == nil {
		fm.To, fm.From, fm.Type = p.To, p.From, strings.Join(p.Rest, ".")
	}
	fm.Headers = m.Header
	if bodies {
		if utf8.Valid(m.Data) {
			body := string(m.Data)
			fm.Body = &body
		} else {
			fm.BodyBase64 = m.Data
		}
	}
	return fm
}

// events serves the live feed, GET /v1/events?subjects=...&bodies=true, as
// Server-Sent Events: a hello event once subscribed, then one event per
// message (see the Event constants and FeedMessage) until the client goes
// away or Close. A client that reads too slowly loses messages, which a
// dropped event counts.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	p := newParams(r)
	p.only(eventsParams...)
	subjParam, _ := p.one("subjects")
	p.bool("bodies")
	if p.err != nil {
		writeError(w, http.StatusBadRequest, p.err.Error())
		return
	}
	subs, err := parseFeedSubjects(subjParam)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	bodies, _ := p.body["bodies"].(bool)
	if id, ok := identityOf(r); ok && bodies && id.Role != auth.RoleAdmin {
		// An observer may not read mail on NATS either (bus.Permissions).
		writeError(w, http.StatusForbidden, fmt.Sprintf("mail bodies need an admin credential; %s is an %s", id.ID, id.Role))
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming is not supported by this connection")
		return
	}
	// One channel for every subject keeps the order in which the server
	// sent them (an event before the watermark that covers it); nats.go
	// drops what does not fit, and counts it per subscription.
	ch := make(chan *nats.Msg, feedBuffer)
	var nsubs []*nats.Subscription
	defer func() {
		for _, sub := range nsubs {
			_ = sub.Unsubscribe()
		}
	}()
	for _, s := range subs {
		sub, err := h.cfg.NC.ChanSubscribe(s, ch)
		if err != nil {
			writeError(w, http.StatusBadGateway, fmt.Sprintf("subscribe %s: %v", s, err))
			return
		}
		nsubs = append(nsubs, sub)
	}
	var reported int64 // drops already told to the client
	fctx, cancel := context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
	err = h.cfg.NC.FlushWithContext(fctx)
	cancel()
	if err != nil {
		writeError(w, http.StatusBadGateway, fmt.Sprintf("subscribe: %v", err))
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	writeEvent(w, EventHello, map[string]any{"subjects": subs})
	flusher.Flush()
	keepalive := time.NewTicker(feedKeepalive)
	defer keepalive.Stop()
	wm := newWatermarks(w, bodies)
	defer wm.stop()
	emit := func(m *nats.Msg) {
		if !wm.hold(m, time.Now()) {
			writeEvent(w, eventName(m.Subject), feedMessage(m, bodies))
		}
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.done:
			return
		case <-keepalive.C:
			_, _ = fmt.Fprint(w, ": keepalive\n\n")
		case <-wm.due():
			wm.flush(time.Now())
		case m := <-ch:
			emit(m)
			// Write what else is waiting before one flush.
			for more := true; more; {
				select {
				case m := <-ch:
					emit(m)
				default:
					more = false
				}
			}
		}
		if n := dropCount(nsubs); n > reported {
			writeEvent(w, EventDropped, map[string]int64{"dropped": n - reported})
			reported = n
		}
		flusher.Flush()
	}
}

// watermarkEvery is the shortest interval between two watermark events of
// one subject on a feed: the latest watermark is what a reader needs, and
// under load the services publish one per commit (hundreds a second).
const watermarkEvery = 100 * time.Millisecond

// watermarks holds back a feed's watermark events so that each subject
// sends at most one per watermarkEvery, always the latest, at most
// watermarkEvery late. It belongs to one feed's goroutine.
type watermarks struct {
	w       http.ResponseWriter
	bodies  bool
	sent    map[string]time.Time // when each subject's last one was written
	pending map[string]*nats.Msg // the latest held back, by subject
	timer   *time.Timer          // fires when the pending ones are due
}

func newWatermarks(w http.ResponseWriter, bodies bool) *watermarks {
	return &watermarks{w: w, bodies: bodies, sent: map[string]time.Time{}, pending: map[string]*nats.Msg{}}
}

// hold takes m when it is a watermark that came too soon after the last
// one of its subject, and reports whether it did.
func (wm *watermarks) hold(m *nats.Msg, now time.Time) bool {
	if name := eventName(m.Subject); name != EventStateCommitted && name != EventAuditCommitted {
		return false
	}
	if now.Sub(wm.sent[m.Subject]) >= watermarkEvery && wm.pending[m.Subject] == nil {
		wm.sent[m.Subject] = now
		return false
	}
	wm.pending[m.Subject] = m
	if wm.timer == nil {
		wm.timer = time.NewTimer(watermarkEvery)
	}
	return true
}

// due fires when held watermarks are to be written; nil (never) when none
// are held.
func (wm *watermarks) due() <-chan time.Time {
	if wm.timer == nil {
		return nil
	}
	return wm.timer.C
}

// flush writes the held watermarks.
func (wm *watermarks) flush(now time.Time) {
	wm.timer = nil
	for subj, m := range wm.pending {
		writeEvent(wm.w, eventName(subj), feedMessage(m, wm.bodies))
		wm.sent[subj] = now
		delete(wm.pending, subj)
	}
}

func (wm *watermarks) stop() {
	if wm.timer != nil {
		wm.timer.Stop()
	}
}

// dropCount is the number of messages subs dropped so far.
func dropCount(subs []*nats.Subscription) int64 {
	var n int64
	for _, sub := range subs {
		if d, err := sub.Dropped(); err == nil {
			n += int64(d)
		}
	}
	return n
}

// writeEvent writes one SSE event. Encoded JSON holds no raw newline, so
// data is one line (the encoder's own final newline ends it).
func writeEvent(w http.ResponseWriter, name string, v any) {
	_, _ = fmt.Fprintf(w, "event: %s\ndata: ", name)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	_, _ = fmt.Fprint(w, "\n")
}
