package server

import (
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// serviceSubjects are the request subjects of each service, which the
// stand-in covers while the service does not serve them.
var serviceSubjects = map[string][]string{
	state.ServiceName: {subjects.StateGetWildcard, subjects.StateListWildcard, subjects.StateStatus},
	audit.ServiceName: {subjects.AuditQuery, subjects.AuditVerify, subjects.AuditStatus},
}

// standIn answers a service's request subjects with the micro convention's
// 503 while the service is not serving them: from before any client can
// connect until the service's own endpoints are up, and again from before
// they go down at Stop until the NATS server stops taking clients. So a
// request never meets "no responders".
//
// It subscribes in the micro services' queue group, so a request reaches
// either the stand-in or the service, never both; in the short overlap
// after a service came up (or before it goes down) a request may get a 503
// although the service would have answered, which the contract allows.
//
// Its methods are safe for concurrent use.
type standIn struct {
	nc *nats.Conn

	mu   sync.Mutex
	subs map[string][]*nats.Subscription // by service name, while covered
	why  map[string]string               // the 503's text, by service name
}

func newStandIn(nc *nats.Conn) *standIn {
	return &standIn{nc: nc, subs: map[string][]*nats.Subscription{}, why: map[string]string{}}
}

// cover makes the stand-in answer service's subjects with a 503 saying why
// (its text, for example "codi-state is starting"), and returns once the
// server has the subscriptions. Covering a covered service only changes
// the text.
func (si *standIn) cover(service, why string) error {
	si.mu.Lock()
	defer si.mu.Unlock()
	si.why[service] = why
	if si.subs[service] != nil {
		return nil
	}
	for _, subj := range serviceSubjects[service] {
		sub, err := si.nc.QueueSubscribe(subj, micro.DefaultQueueGroup, func(m *nats.Msg) { si.answer(service, m) })
		if err != nil {
			return fmt.Errorf("server: stand-in for %s on %s: %w", service, subj, err)
		}
		si.subs[service] = append(si.subs[service], sub)
	}
	if err := si.nc.Flush(); err != nil {
		return fmt.Errorf("server: stand-in for %s: %w", service, err)
	}
	return nil
}

// uncover hands service's subjects back to the service, whose endpoints
// must be up.
func (si *standIn) uncover(service string) error {
	si.mu.Lock()
	defer si.mu.Unlock()
	subs := si.subs[service]
	delete(si.subs, service)
	// Drain, not Unsubscribe: a request the server already routed to the
	// stand-in (the queue group picks one member) still gets its 503;
	// unsubscribing would drop it and leave the caller waiting out its
	// timeout (seen once in CI under load).
	for _, sub := range subs {
		if err := sub.Drain(); err != nil {
			return fmt.Errorf("server: stand-in for %s: %w", service, err)
		}
	}
	// Drain only queues the UNSUBs; the round trip of Flush returns once
	// the server has them, so no request sent after uncover returns is
	// routed to the stand-in (a bench run got "503 codi-audit is starting"
	// from a server that had said it was ready).
	if err := si.nc.Flush(); err != nil {
		return fmt.Errorf("server: stand-in for %s: %w", service, err)
	}
	return nil
}

func (si *standIn) answer(service string, m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	si.mu.Lock()
	why := si.why[service]
	si.mu.Unlock()
	resp := nats.NewMsg(m.Reply)
	resp.Header.Set(micro.ErrorHeader, why)
	resp.Header.Set(micro.ErrorCodeHeader, "503")
	_ = si.nc.PublishMsg(resp)
}
